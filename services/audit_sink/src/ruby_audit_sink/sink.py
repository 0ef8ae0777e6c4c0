"""The audit sink: AUDIT records in, the hash-chained store out, through one batching writer.

The handler hands each decoded ``AuditRecordV1`` to the `BatchWriter` and returns (so the
runner acks) only after the batch holding it is committed: every acked record is on disk, and
a record redelivered after a crash is skipped by its id, so each is stored exactly once. A
message that is not an audit record is a ``PermanentError``: the runner dead-letters it (and
logs a warning) and goes on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import structlog
from nats.aio.client import Client

from ruby_audit_sink.answers import Answers
from ruby_audit_sink.status import SinkStatus
from ruby_audit_sink.writer import BatchWriter, Committed
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.errors import PermanentError
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.status import read_audit_head
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import AUDIT_SINK
from ruby_runtime.errors import SettingsError
from ruby_schemas.audit import AuditOutcome, AuditRecordV1
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope

log = structlog.get_logger("ruby_audit_sink")

IDENTITY: Final = AUDIT_SINK
"""The sink's NATS and Vault identity (and its durable consumer's name)."""


class AuditSink:
    """The store's writer and the sink's status; `start` before the runner, `close` after it."""

    def __init__(
        self, nc: Client, db: Path, *, status_bucket: str, subjects: Subjects | None = None
    ) -> None:
        self.db = db
        self._nc, self._status_bucket = nc, status_bucket
        self._subjects = subjects
        self.status = SinkStatus(nc, status_bucket, IDENTITY, db)
        self.writer = BatchWriter(db, on_commit=self.status.committed)
        self.answers = None if subjects is None else Answers(nc, subjects, db)

    async def start(self) -> None:
        """Open the store, write the status record (ready), log that it runs.

        Raises ``SettingsError`` (naming ``RUBY_AUDIT_DB``) when the store cannot be opened.
        """
        try:
            state = await self.writer.open()
        except (sqlite3.Error, OSError) as exc:
            await self.writer.close()
            raise SettingsError(
                f"RUBY_AUDIT_DB: cannot open the audit store at {self.db}: {exc}"
            ) from exc
        await self._check_head(state)
        if self.answers is not None:
            await self.answers.start()
        await self.status.start(state)
        log.info("audit sink running", db=str(self.db), stored=state.stored)

    async def _check_head(self, state: Committed) -> None:
        """Compare the store with the head this sink published last (``audit_sink.head``).

        A store that ends before it, or ends there with another hash, lost or changed rows
        while the sink was down. That is logged and audited (``audit.store_mismatch``), in the
        AUDIT stream that nobody can purge, before new records cover the gap; the sink goes on.
        """
        if self._subjects is None:
            return
        try:
            head = await read_audit_head(self._nc, self._subjects)
        except ValueError:
            return  # unreadable: nothing to hold the store to
        if head is None:
            return  # nothing published yet (a new installation)
        seq, digest = head.seq, head.hash
        if state.head_seq > seq or (state.head_seq == seq and state.head_hash == digest):
            return
        reason = (
            f"the store ends at record {state.head_seq}, but this sink had published record "
            f"{seq} as its head: rows were removed or changed while it was down"
            if state.head_seq < seq
            else f"record {seq} differs from the head this sink published: rows were changed"
        )
        log.error("audit store does not match its published head", reason=reason)
        record = audit_record(
            self._subjects,
            service=IDENTITY,
            action="audit.store_mismatch",
            target=f"file:{self.db}",
            outcome=AuditOutcome.FAILED,
            reason=reason,
            details={
                "published_seq": seq,
                "published_hash": digest,
                "store_seq": state.head_seq,
                "store_hash": state.head_hash,
            },
        )
        await publish_records(self._nc, [record])

    async def close(self) -> None:
        """Stop answering, commit what is queued, close the store, write ``ready: false``."""
        if self.answers is not None:
            await self.answers.close()
        await self.writer.close()
        await self.status.close()
        log.info("audit sink stopped", db=str(self.db), stored=self.status.stored)

    async def handle(self, envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        """Store the record; return (to be acked) once it is committed."""
        record = envelope.data
        if not isinstance(record, AuditRecordV1):
            raise PermanentError(f"not an audit record: {envelope.type} on {delivery.subject}")
        await self.writer.store(record, delivery.stream_seq)
        return ()
