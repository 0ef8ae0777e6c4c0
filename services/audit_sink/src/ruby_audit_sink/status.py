"""What the audit sink shows about itself, in the status bucket under its own keys.

- ``audit_sink``: an `AuditSinkRecord` (ready, updated, stored, head_seq, head_hash, db),
  written on start, after a commit (at most every ``FLUSH_INTERVAL``), every
  ``STATUS_INTERVAL`` and, with ``ready: false``, on stop.
- ``audit_sink.head``: an `AuditHeadRecord` (seq, hash, updated), the chain's head after every
  commit that added rows. ``rubyctl audit verify`` compares the store's head with it: a store
  whose head is behind it lost rows from its end. It is not written on start, so a store
  truncated while the sink was down still differs from it (until new records are stored).

Both contracts are in ``ruby_schemas.status``, shared with the readers. Records are core NATS
publishes to ``$KV.<bucket>.<key>`` (the sink may write its own keys only, and reads none).
One event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from nats.aio.client import Client

from ruby_audit_sink.writer import Committed
from ruby_schemas.status import AuditHeadRecord, AuditSinkRecord, StatusRecord

FLUSH_INTERVAL: Final = 0.5
"""Seconds between status records written because of commits."""
STATUS_INTERVAL: Final = 5.0
"""Seconds between status records even when nothing was stored."""


class SinkStatus:
    """Writes the sink's status and head records; `start`, `committed` after commits, `close`."""

    def __init__(self, nc: Client, bucket: str, identity: str, db: Path) -> None:
        self._nc = nc
        self.subject = f"$KV.{bucket}.{identity}"
        self.head_subject = f"{self.subject}.head"
        self._db = str(db)
        self.ready = False
        self._state = Committed(0, 0, 0, "")
        self._dirty = False
        self._written = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self, state: Committed) -> None:
        """Ready: write the status record now and then every few seconds."""
        self._state = state
        self.ready = True
        await self._write()
        self._task = asyncio.create_task(self._run(), name="audit-sink-status")

    async def committed(self, state: Committed) -> None:
        """A batch was committed: the head now, the status record if it is due."""
        self._state = state
        if state.added:
            head = AuditHeadRecord(
                seq=state.head_seq, hash=state.head_hash, updated=datetime.now(UTC)
            )
            await self._publish(self.head_subject, head)
        if time.monotonic() - self._written >= FLUSH_INTERVAL:
            await self._write()
        else:
            self._dirty = True

    async def close(self) -> None:
        """Write ``ready: false`` (with the final counts) and stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.ready = False
        await self._write()
        with contextlib.suppress(Exception):  # the connection may be gone already
            await self._nc.flush(timeout=2)

    @property
    def stored(self) -> int:
        """Rows in the store, as of the last commit."""
        return self._state.stored

    def record(self) -> AuditSinkRecord:
        """The ``audit_sink`` status record as it would be written now."""
        return AuditSinkRecord(
            ready=self.ready,
            updated=datetime.now(UTC),
            stored=self._state.stored,
            head_seq=self._state.head_seq,
            head_hash=self._state.head_hash,
            db=self._db,
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            due = time.monotonic() - self._written >= STATUS_INTERVAL
            if self._dirty or due:
                await self._write()

    async def _write(self) -> None:
        self._dirty = False
        self._written = time.monotonic()
        await self._publish(self.subject, self.record())

    async def _publish(self, subject: str, record: StatusRecord) -> None:
        # While reconnecting, nats-py buffers the publish; a record lost to a closed connection
        # is rewritten by the next commit or interval (the head then lags the store: safe).
        if self._nc.is_closed:
            return
        with contextlib.suppress(Exception):
            await self._nc.publish(subject, record.model_dump_json().encode())
