"""The batching writer alone (no broker): concurrent records share transactions, each call
returns after its record is committed, a repeated record id is stored once, and a closed
writer refuses (so the message is retried, never acked without its record)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ruby_audit_sink.writer import BatchWriter, Committed
from ruby_auditstore import AuditStore
from ruby_natsx.audit import audit_record
from ruby_natsx.errors import TransientError
from ruby_natsx.subjects import Subjects
from ruby_schemas.audit import AuditRecordV1


def records(count: int, start: int = 0) -> list[AuditRecordV1]:
    out = []
    for i in range(start, start + count):
        data = audit_record(
            Subjects("w"), service="gateway", action="command.executed", target=f"light.l{i}"
        ).envelope.data
        assert isinstance(data, AuditRecordV1)
        out.append(data)
    return out


async def test_concurrent_records_are_committed_in_few_batches(tmp_path: Path) -> None:
    commits: list[Committed] = []

    async def seen(committed: Committed) -> None:
        commits.append(committed)

    db = tmp_path / "audit.db"
    writer = BatchWriter(db, max_batch=100, on_commit=seen)
    assert (await writer.open()).stored == 0
    # Handed over out of order, in one batch: stored in the order of their stream sequence.
    first = records(50)
    await asyncio.gather(*(writer.store(first[i], order=i) for i in reversed(range(50))))
    assert len(commits) == 1
    batch = records(950, start=50)
    await asyncio.gather(*(writer.store(r, order=50 + i) for i, r in enumerate(batch)))
    batch = first + batch
    with AuditStore(db, readonly=True) as store:  # every call returned: everything is on disk
        assert store.count() == 1000
        assert [s.record.record_id for s in store.query()] == [r.record_id for r in batch]
        assert store.verify().ok
        head = store.head()
    assert 11 <= len(commits) < 100, len(commits)
    assert all(c.added <= 100 for c in commits)
    assert (commits[-1].stored, commits[-1].head_seq, commits[-1].head_hash) == (1000, *head)

    await asyncio.gather(*(writer.store(r) for r in batch[:10]))  # redelivered: skipped
    assert commits[-1].added == 0
    assert commits[-1].stored == 1000
    await writer.close()
    with pytest.raises(TransientError):
        await writer.store(batch[0])


async def test_reopening_counts_what_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    writer = BatchWriter(db)
    await writer.open()
    await asyncio.gather(*(writer.store(r) for r in records(5)))
    await writer.close()
    again = BatchWriter(db)
    state = await again.open()
    assert (state.stored, state.head_seq) == (5, 5)
    await again.close()


async def test_a_failed_commit_fails_the_waiting_records(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    writer = BatchWriter(db)
    await writer.open()
    other = sqlite3.connect(db)
    try:  # another writer holds the write lock past the store's busy timeout (5 s)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientError, match="database is locked"):
            await writer.store(records(1)[0])
        other.execute("ROLLBACK")
    finally:
        other.close()
    await writer.store(records(1, start=1)[0])  # and the writer goes on
    await writer.close()
