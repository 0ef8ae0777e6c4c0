"""The audit store: idempotent appends, a hash chain that names the first edited, deleted or
reordered row, and queries."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ruby_auditstore import AuditStore
from ruby_schemas.audit import AuditOutcome, AuditRecordV1

T0 = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


def record(i: int, **overrides: object) -> AuditRecordV1:
    fields: dict[str, object] = {
        "record_id": f"r{i}",
        "actor": "service:gateway" if i % 2 else "service:engine",
        "action": "command.executed" if i % 2 else "rule.fired",
        "target": f"light.l{i % 3}",
        "outcome": AuditOutcome.SUCCEEDED,
        "reason": "because",
        "correlation_id": f"c{i // 2}",
        "occurred_at": T0 + timedelta(seconds=i),
        "details": {"command_ids": [f"cmd-{i}"], "n": i},
    }
    fields.update(overrides)
    return AuditRecordV1.model_validate(fields)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore(tmp_path / "audit.db")
    assert s.append([record(i) for i in range(1, 11)]) == 10
    return s


def tamper(path: Path, *statements: str) -> None:
    """What someone with the file does: drop the triggers, change rows."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        for statement in statements:
            db.execute(statement)
    db.close()


def test_appending_again_stores_nothing_twice(store: AuditStore) -> None:
    assert store.append([record(5), record(11), record(11)]) == 1
    assert store.count() == 11
    result = store.verify()
    assert result.ok
    assert (result.count, result.head_seq) == (11, 11)
    assert store.head() == (11, result.head_hash)


def test_sqlite_itself_refuses_updates_and_deletes(store: AuditStore) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store._db.execute("UPDATE audit_records SET reason = 'x' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store._db.execute("DELETE FROM audit_records WHERE seq = 3")


def test_an_edited_record_breaks_the_chain_at_that_row(store: AuditStore) -> None:
    store.close()
    path = store.path
    tamper(path, "UPDATE audit_records SET record = replace(record, 'because', 'becauze') "
                 "WHERE seq = 4")  # fmt: skip
    broken = AuditStore(path).verify().broken
    assert broken is not None
    assert (broken.seq, broken.record_id) == (4, "r4")
    assert "edited" in broken.reason


def test_an_edited_column_alone_is_caught_too(store: AuditStore) -> None:
    store.close()
    tamper(store.path, "UPDATE audit_records SET target = 'lock.front_door' WHERE seq = 6")
    broken = AuditStore(store.path).verify().broken
    assert broken is not None
    assert broken.seq == 6
    assert "'target'" in broken.reason


def test_a_deleted_record_breaks_the_chain_at_the_next_row(store: AuditStore) -> None:
    store.close()
    tamper(store.path, "DELETE FROM audit_records WHERE seq = 7")
    broken = AuditStore(store.path).verify().broken
    assert broken is not None
    assert (broken.seq, broken.record_id) == (8, "r8")
    assert "record 7 is missing" in broken.reason


def test_a_deleted_and_renumbered_record_is_caught_by_the_hashes(store: AuditStore) -> None:
    store.close()
    tamper(
        store.path,
        "DELETE FROM audit_records WHERE seq = 7",
        "UPDATE audit_records SET seq = seq - 1 WHERE seq > 7",
    )
    broken = AuditStore(store.path).verify().broken
    assert broken is not None
    assert (broken.seq, broken.record_id) == (7, "r8")


def test_reordered_records_break_the_chain_at_the_first_moved_row(store: AuditStore) -> None:
    store.close()
    tamper(
        store.path,
        "UPDATE audit_records SET seq = -1 WHERE seq = 3",
        "UPDATE audit_records SET seq = 3 WHERE seq = 5",
        "UPDATE audit_records SET seq = 5 WHERE seq = -1",
    )
    broken = AuditStore(store.path).verify().broken
    assert broken is not None
    assert (broken.seq, broken.record_id) == (3, "r5")
    assert "reordered" in broken.reason


def test_queries_filter_by_time_actor_action_target_correlation_and_details(
    store: AuditStore,
) -> None:
    def ids(**filters: object) -> list[str]:
        return [s.record.record_id for s in store.query(**filters)]  # type: ignore[arg-type]

    assert ids(since=T0 + timedelta(seconds=8)) == ["r8", "r9", "r10"]
    assert ids(until=T0 + timedelta(seconds=3)) == ["r1", "r2"]
    assert ids(actor="service:engine", limit=2) == ["r2", "r4"]
    assert ids(action="rule.*", target="light.l1") == ["r4", "r10"]
    assert ids(correlation_id="c3") == ["r6", "r7"]
    assert ids(detail=("command_ids", "cmd-9")) == ["r9"]
    assert ids(detail=("n", 3)) == ["r3"]
    assert ids(action="rule%") == []  # a LIKE wildcard is matched literally
    assert [s.seq for s in store.query(newest_first=True, limit=2)] == [10, 9]


def test_a_readonly_store_needs_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AuditStore(tmp_path / "none.db", readonly=True)
