"""The sink in-process on a real nats-server: AUDIT records end up in the store once, in
stream order, with the chain intact; a record republished under another message id is stored
once; what is not an audit record is dead-lettered and the sink goes on; its status and head
records tell what the store holds."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ruby_audit_sink.service import audit_db
from ruby_audit_sink.testing import published_head, running_sink, sink_ready, sink_record
from ruby_auditstore import AuditStore
from ruby_natsx.audit import audit_record
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually, state_changed
from ruby_natsx.topology import AUDIT, AUDIT_SINK, DLQ, STATUS, Topology
from ruby_runtime.errors import SettingsError
from ruby_runtime.settings import ServiceSettings
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode, encode


def outbound(subjects: Subjects, count: int, service: str = "gateway") -> list[Outbound]:
    return [
        audit_record(subjects, service=service, action="command.executed", target=f"light.l{i}")
        for i in range(count)
    ]


def stored(db: Path) -> int:
    with AuditStore(db, readonly=True) as store:
        return store.count()


async def drained(js: JetStreamContext, topo: Topology) -> bool:
    info = await js.consumer_info(topo.stream(AUDIT).name, AUDIT_SINK)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_records_are_stored_once_in_stream_order(
    nc: Client, js: JetStreamContext, topology_applied: Topology, subjects: Subjects, tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    messages = outbound(subjects, 600)
    publisher = Publisher(nc)
    await publisher.publish(messages[:300])  # a backlog before the sink starts
    status = await js.key_value(topology_applied.bucket(STATUS).bucket)
    async with running_sink(nc, subjects, db):
        assert await sink_ready(status)
        await publisher.publish(messages[300:])  # and more while it runs
        await eventually(lambda: drained(js, topology_applied), message="consumer drained")
        assert stored(db) == 600
        with AuditStore(db, readonly=True) as store:
            ids = [s.record.record_id for s in store.query()]
            assert ids == [m.envelope.id for m in messages], "not in stream order"
            assert store.verify().ok
            head = store.head()

        async def head_published() -> bool:
            return await published_head(status) == head

        await eventually(head_published, message="the head record matches the store")

        async def status_written() -> bool:
            record = await sink_record(status)
            return record is not None and record.stored == 600

        await eventually(status_written, message="the status record counts 600")
        record = await sink_record(status)
        assert record is not None
        assert record.ready is True
        assert (record.head_seq, record.head_hash) == head
        assert record.db == str(db)
    await publisher.close()
    record = await sink_record(status)
    assert record is not None
    assert record.ready is False
    assert record.stored == 600


async def test_a_record_republished_under_another_msg_id_is_stored_once(
    nc: Client, js: JetStreamContext, topology_applied: Topology, subjects: Subjects, tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    (message,) = outbound(subjects, 1)
    publisher = Publisher(nc)
    first = await publisher.publish([message])
    # The stream dedupes on Nats-Msg-Id only: under another id, it stores the record again.
    again = await publisher.publish_raw(
        message.subject, encode(message.envelope), {}, msg_id=f"{message.envelope.id}-again"
    )
    assert again > first[0]
    async with running_sink(nc, subjects, db):
        await eventually(lambda: drained(js, topology_applied), message="consumer drained")
        await publisher.publish(outbound(subjects, 1))  # a later record, to see it went on
        await eventually(lambda: stored(db) == 2, message="the later record stored")
        await eventually(lambda: drained(js, topology_applied), message="consumer drained")
    await publisher.close()
    with AuditStore(db, readonly=True) as store:
        ids = [s.record.record_id for s in store.query()]
    assert ids[0] == message.envelope.id
    assert len(ids) == len(set(ids)) == 2


async def test_what_is_not_an_audit_record_is_dead_lettered_and_the_sink_goes_on(
    nc: Client, js: JetStreamContext, topology_applied: Topology, subjects: Subjects, tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    publisher = Publisher(nc)
    subject = subjects.audit("gateway", "command_executed")
    (before,) = outbound(subjects, 1)
    (after,) = outbound(subjects, 1)
    wrong = state_changed("light.kitchen", "on")
    await publisher.publish([before])
    await publisher.publish_raw(subject, encode(wrong), {}, msg_id=wrong.id)
    await publisher.publish_raw(subject, b"not even json", {}, msg_id="garbage")
    await publisher.publish([after])
    with structlog.testing.capture_logs() as logs:
        async with running_sink(nc, subjects, db):
            await eventually(lambda: drained(js, topology_applied), message="consumer drained")
            # Each dead letter is audited too (by the sink itself): two more records.
            await eventually(lambda: stored(db) == 4, message="4 records stored")
            await eventually(lambda: drained(js, topology_applied), message="consumer drained")
    await publisher.close()

    with AuditStore(db, readonly=True) as store:
        rows = [s.record for s in store.query()]
        assert store.verify().ok
    assert [r.record_id for r in rows[:2]] == [before.envelope.id, after.envelope.id]
    assert {r.action for r in rows[2:]} == {"message.dead_lettered"}
    assert {r.actor for r in rows[2:]} == {f"service:{AUDIT_SINK}"}

    dlq = topology_applied.stream(DLQ).name
    letters = [decode((await js.get_msg(dlq, seq)).data or b"") for seq in (1, 2)]
    assert {letter.data.original_subject for letter in letters} == {subject}  # type: ignore[attr-defined]
    reasons = " ".join(letter.data.error for letter in letters)  # type: ignore[attr-defined]
    assert "not an audit record: ha.state_changed.v1" in reasons

    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["message dead-lettered"] * 2
    infos = [e["event"] for e in logs if e["log_level"] == "info"]
    assert infos.count("audit sink running") == 1
    assert infos.count("audit sink stopped") == 1
    assert len(infos) <= 4, "something is logged at INFO per record"


async def test_throughput_of_a_10k_backlog(
    nc: Client, js: JetStreamContext, topology_applied: Topology, subjects: Subjects, tmp_path: Path
) -> None:
    """Measured, not asserted: records/s stored from a backlog of 10,000 (in-process)."""
    db = tmp_path / "audit.db"
    messages = outbound(subjects, 10_000)
    publisher = Publisher(nc)
    for i in range(0, len(messages), 1000):
        await publisher.publish(messages[i : i + 1000])
    await publisher.close()
    async with running_sink(nc, subjects, db):
        started = time.perf_counter()
        await eventually(lambda: stored(db) == 10_000, interval=0.01, message="all stored")
        elapsed = time.perf_counter() - started
        await eventually(lambda: drained(js, topology_applied), message="consumer drained")
    print(f"\naudit sink in-process: 10,000 records in {elapsed:.2f}s = {10_000 / elapsed:,.0f}/s")
    with AuditStore(db, readonly=True) as store:
        assert store.verify().ok


async def test_a_store_that_cannot_be_opened_is_a_settings_error(
    nc: Client, topology_applied: Topology, subjects: Subjects, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match="RUBY_AUDIT_DB: cannot open the audit store"):
        async with running_sink(nc, subjects, tmp_path):  # a directory, not a database file
            pass


def test_the_store_is_in_the_state_directory_unless_named(tmp_path: Path) -> None:
    settings = ServiceSettings.from_env(AUDIT_SINK, {"RUBY_STATE_DIR": str(tmp_path)})
    assert audit_db(settings, {}) == tmp_path / "audit" / "audit.db"
    named = tmp_path / "elsewhere.db"
    assert audit_db(settings, {"RUBY_AUDIT_DB": str(named)}) == named


async def test_rows_removed_from_the_end_while_the_sink_was_down_are_audited_at_its_start(
    nc: Client, js: JetStreamContext, topology_applied: Topology, subjects: Subjects, tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    publisher = Publisher(nc)
    await publisher.publish(outbound(subjects, 20))
    status = await js.key_value(topology_applied.bucket(STATUS).bucket)
    async with running_sink(nc, subjects, db):
        await eventually(lambda: stored(db) == 20, message="all stored")
        # The head follows the commit (a core publish, stored by the bucket a moment later):
        # until it is there, a truncation would go unnoticed, so wait for it, not for the rows.

        async def head_at_20() -> bool:
            head = await published_head(status)
            return head is not None and head[0] == 20

        await eventually(head_at_20, message="head published")
    await publisher.close()
    tampered = sqlite3.connect(db)  # while the sink is down, the last two rows go
    with tampered:
        tampered.execute("DROP TRIGGER audit_no_delete")
        tampered.execute("DELETE FROM audit_records WHERE seq > 18")
    tampered.close()
    async with running_sink(nc, subjects, db):
        subject = subjects.audit(AUDIT_SINK, "audit_store_mismatch")

        async def audited() -> bool:
            try:
                await js.get_last_msg(topology_applied.stream(AUDIT).name, subject)
            except NotFoundError:
                return False
            return True

        await eventually(audited, message="the mismatch is audited")
    msg = await js.get_last_msg(topology_applied.stream(AUDIT).name, subject)
    record = decode(msg.data or b"").data
    assert isinstance(record, AuditRecordV1)
    assert record.action == "audit.store_mismatch"
    assert "the store ends at record 18" in record.reason
    assert record.details is not None
    assert record.details["published_seq"] == 20
