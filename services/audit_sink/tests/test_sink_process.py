"""The sink as a process (``ruby-audit-sink``, its own NKEY identity over TLS), killed with
``kill -9`` while 10,000 audit records stream in: after a restart the store holds each record
exactly once, the chain verifies, and the head record in the status bucket matches the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from ruby_audit_sink.testing import published_head, sink_process, sink_ready, sink_record
from ruby_auditstore import AuditStore
from ruby_ctl.testing import Installation
from ruby_natsx.apply import apply_consumer
from ruby_natsx.audit import audit_record
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT, AUDIT_SINK, STATUS, Topology

RECORDS = 10_000
CHUNK = 250
"""Records per pipelined publish; a pause between chunks keeps them streaming in for ~2 s."""


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    with AuditStore(db, readonly=True) as store:
        return store.count()


async def drained(js: JetStreamContext, topo: Topology, last_seq: int) -> bool:
    info = await js.consumer_info(topo.stream(AUDIT).name, AUDIT_SINK)
    return bool(
        info.delivered.stream_seq >= last_seq
        and info.num_pending == 0
        and info.num_ack_pending == 0
        and info.num_redelivered == 0
    )


def head_is(status: KeyValue, head: tuple[int, str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await published_head(status) == head

    return check


async def test_kill_9_while_records_stream_in_stores_each_exactly_once(
    secure_installation: Installation, tmp_path: Path
) -> None:
    installation = secure_installation
    topo = installation.topology
    operator = await installation.connect("operator")
    js = operator.jetstream()
    sink_nc = await installation.connect(AUDIT_SINK)  # only the sink may change its durable

    async def short_ack_wait() -> None:
        """A short AckWait, so that the deliveries the killed sink held come back in seconds,
        not 30; set after each start, since the sink applies its declared durable then."""
        short = dataclasses.replace(topo.consumer(AUDIT_SINK), ack_wait=3.0)
        await apply_consumer(sink_nc.jetstream(), short)

    status = await js.key_value(topo.bucket(STATUS).bucket)
    gateway = await installation.connect("gateway")  # may publish <p>.audit.gateway.>
    publisher = Publisher(gateway)
    messages: list[Outbound] = [
        audit_record(
            installation.subjects,
            service="gateway",
            action="command.executed",
            target=f"light.l{i % 50}",
            details={"n": i},
        )
        for i in range(RECORDS)
    ]
    db = tmp_path / "audit" / "audit.db"
    env = {**os.environ, **installation.environ(), "RUBY_AUDIT_DB": str(db)}
    sink = sink_process(env, tmp_path / "audit_sink.log")
    last_seq = 0

    async def stream_in() -> None:
        nonlocal last_seq
        for i in range(0, RECORDS, CHUNK):
            last_seq = max(await publisher.publish(messages[i : i + CHUNK]))
            await asyncio.sleep(0.04)

    try:
        since = datetime.now(UTC)
        await sink.start()
        await eventually(lambda: sink_ready(status, since), within=30, message="sink ready")
        await short_ack_wait()
        publishing = asyncio.create_task(stream_in())
        await eventually(lambda: stored(db) >= 3000, within=20, message="some records stored")
        await sink.kill9()
        at_kill = stored(db)
        assert not publishing.done(), "all records were published before the kill"
        await publishing
        assert at_kill < RECORDS, "the sink stored everything before it was killed"

        since = datetime.now(UTC)
        await sink.start()
        await eventually(lambda: sink_ready(status, since), within=30, message="sink ready again")
        await short_ack_wait()
        await eventually(lambda: drained(js, topo, last_seq), within=30, message="drained")

        with AuditStore(db, readonly=True) as store:
            streamed = [s.record.record_id for s in store.query(actor="service:gateway")]
            assert len(streamed) == RECORDS  # each once...
            assert set(streamed) == {m.envelope.id for m in messages}  # ...and every one
            own = [s.record.action for s in store.query(actor="service:audit_sink")]
            assert own == ["secret.read", "secret.read"]  # its two starts, audited
            assert store.count() == RECORDS + len(own)
            before = store.count()
            verified = store.verify()
            assert verified.ok, verified.broken
            head = store.head()
        await eventually(head_is(status, head), within=10, message="head published")

        # The figure: a backlog of 10,000 more, stored by the sink process after a restart.
        assert await sink.stop() == 0
        more = [
            audit_record(
                installation.subjects, service="gateway", action="auth.refused", target=f"u{i}"
            )
            for i in range(RECORDS)
        ]
        for i in range(0, RECORDS, 1000):
            last_seq = max(await publisher.publish(more[i : i + 1000]))
        since = datetime.now(UTC)
        await sink.start()
        await eventually(lambda: sink_ready(status, since), within=30, message="sink ready")
        started = time.perf_counter()
        await eventually(
            lambda: stored(db) == before + RECORDS + 1,  # and its third start's secret.read
            within=30,
            interval=0.01,
            message="backlog stored",
        )
        elapsed = time.perf_counter() - started
        print(
            f"\naudit sink process: a backlog of {RECORDS:,} records stored in {elapsed:.2f}s "
            f"= {RECORDS / elapsed:,.0f}/s (killed at {at_kill:,} stored)"
        )
        await eventually(lambda: drained(js, topo, last_seq), within=30, message="drained")
        with AuditStore(db, readonly=True) as store:
            assert store.verify().ok
            head = store.head()
        await eventually(head_is(status, head), within=10, message="head published")
        assert await sink.stop() == 0
        record = await sink_record(status)
        assert record is not None
        assert record.ready is False
        assert record.stored == before + RECORDS + 1
    finally:
        if sink.process is not None and sink.process.returncode is None:
            await sink.stop()
        await publisher.close()
        await gateway.drain()
        await operator.drain()
        await sink_nc.drain()
    output = sink.log.read_text()
    assert installation.seed(AUDIT_SINK).reveal() not in output
    events = sink.events()
    assert events.count("audit sink running") == 3
    assert events.count("audit sink stopped") == 2  # not after kill -9
