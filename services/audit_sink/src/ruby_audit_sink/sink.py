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

from ruby_audit_sink.status import SinkStatus
from ruby_audit_sink.writer import BatchWriter
from ruby_natsx.errors import PermanentError
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.topology import AUDIT_SINK
from ruby_runtime.errors import SettingsError
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope

log = structlog.get_logger("ruby_audit_sink")

IDENTITY: Final = AUDIT_SINK
"""The sink's NATS and Vault identity (and its durable consumer's name)."""


class AuditSink:
    """The store's writer and the sink's status; `start` before the runner, `close` after it."""

    def __init__(self, nc: Client, db: Path, *, status_bucket: str) -> None:
        self.db = db
        self.status = SinkStatus(nc, status_bucket, IDENTITY, db)
        self.writer = BatchWriter(db, on_commit=self.status.committed)

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
        await self.status.start(state)
        log.info("audit sink running", db=str(self.db), stored=state.stored)

    async def close(self) -> None:
        """Commit what is queued, close the store, write ``ready: false``."""
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
