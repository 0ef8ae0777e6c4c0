"""The one writer of the audit store: records from many handlers, committed in batches.

Promises:
- ``store(record)`` returns only once the record is committed (on disk: the store commits
  with ``synchronous=FULL``), or was already stored (idempotent on ``record_id``). It raises
  ``TransientError`` when the commit failed or the writer is closed, so the message is retried,
  never acked without its record.
- One task takes what handlers queued: up to ``max_batch`` records, waiting ``linger`` seconds
  for more when it was idle, and appends them in one transaction, ordered by stream sequence.
  While one batch commits, the next one queues (group commit).
- The store lives in one worker thread: it is created, used and closed there only (SQLite
  objects are not thread-safe). Nothing else touches the file.
- A handler cancelled while waiting (the runner's drain) leaves its record to be committed or
  not; either way its message is nak'ed and redelivered, and the store skips it if present.
Not thread-safe: one writer, one event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

import structlog

from ruby_auditstore import AuditStore
from ruby_natsx import tuning
from ruby_natsx.errors import TransientError
from ruby_schemas.audit import AuditRecordV1

log = structlog.get_logger("ruby_audit_sink.writer")

_P = ParamSpec("_P")
_T = TypeVar("_T")

MAX_BATCH: Final = tuning.MAX_ACK_PENDING
"""Records per transaction at most: the consumer never has more in flight than this."""
LINGER: Final = 0.002
"""Seconds an idle writer waits for more records after the first: a burst fills one batch,
a single record waits no longer than this."""


@dataclass(frozen=True, slots=True)
class Committed:
    """The store after a commit: rows added by it, rows in all, the chain's head."""

    added: int
    stored: int
    head_seq: int
    head_hash: str


OnCommit = Callable[[Committed], Awaitable[None]]
"""Told after each commit (and its futures resolved); must not raise."""


@dataclass(slots=True)
class _Pending:
    order: int
    record: AuditRecordV1
    done: asyncio.Future[None]


class _Owned:
    """The store and its row count, living in the writer's thread."""

    def __init__(self, path: Path) -> None:
        self.store = AuditStore(path)
        self.stored = self.store.count()

    def state(self, added: int = 0) -> Committed:
        self.stored += added
        seq, digest = self.store.head()
        return Committed(added, self.stored, seq, digest)

    def append(self, records: list[AuditRecordV1]) -> Committed:
        return self.state(self.store.append(records))


class BatchWriter:
    """Owns the audit store at ``path`` through one thread; see the module doc for promises."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = MAX_BATCH,
        linger: float = LINGER,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.path = path
        self._max_batch = max_batch
        self._linger = linger
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-store")
        self._owned: _Owned | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> Committed:
        """Open (or create) the store in the writer's thread and start taking records."""
        self._owned = await self._in_thread(_Owned, self.path)
        state = await self._in_thread(self._owned.state)
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        return state

    async def store(self, record: AuditRecordV1, order: int = 0) -> None:
        """Return once ``record`` is committed; ``order`` (its stream sequence) orders a batch."""
        if self._closing or self._task is None or self._task.done():
            raise TransientError("the audit store writer is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(order, record, done))
        await done

    async def close(self) -> None:
        """Commit what is queued, stop the task, close the store in its thread."""
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        if self._owned is not None:
            await self._in_thread(self._owned.store.close)
            self._owned = None
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                idle = self._queue.empty()
                first = await self._queue.get()
                if first is None:
                    return
                batch = [first]
                last = self._take(batch)
                if not last and idle and len(batch) < self._max_batch and self._linger > 0:
                    await asyncio.sleep(self._linger)
                    last = self._take(batch)
                await self._commit(batch)
                if last:
                    return
        finally:  # cancelled: nobody waits forever for a commit that will not come
            while not self._queue.empty():
                if (item := self._queue.get_nowait()) is not None:
                    batch.append(item)
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(TransientError("the audit store writer stopped"))

    def _take(self, batch: list[_Pending]) -> bool:
        """Move queued records into ``batch`` up to its limit; True if the end was queued."""
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    async def _commit(self, batch: list[_Pending]) -> None:
        live = sorted((p for p in batch if not p.done.done()), key=lambda p: p.order)
        if not live or self._owned is None:
            return
        try:
            committed = await self._in_thread(self._owned.append, [p.record for p in live])
        except Exception as exc:  # sqlite3.Error, OSError (a full disk): retried by redelivery
            log.error(  # noqa: TRY400 - the error is named; a traceback per batch helps nobody
                "audit records not stored; will be retried", records=len(live), error=repr(exc)
            )
            for p in live:
                if not p.done.done():
                    p.done.set_exception(TransientError(f"the audit store refused: {exc!r}"))
            return
        for p in live:
            if not p.done.done():
                p.done.set_result(None)
        log.debug("audit batch committed", records=len(live), added=committed.added)
        if self._on_commit is not None:
            try:
                await self._on_commit(committed)
            except Exception as exc:  # status is best effort; the records are stored
                log.warning("status after commit not written", error=repr(exc))

    async def _in_thread(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
