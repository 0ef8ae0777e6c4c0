"""The pull-consumer runner against a real nats-server: the promises in ruby_natsx.runner."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence

import psutil
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_natsx.apply import apply_consumer, apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.errors import PermanentError, TransientError
from ruby_natsx.handler import Delivery, Handler, Outbound
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import (
    ServerFactory,
    eventually,
    jetstream_ready,
    publish_states,
    state_changed,
)
from ruby_natsx.topology import AUDIT, DLQ, ENGINE, EVENTS, Topology, topology
from ruby_schemas.base import Payload
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.registry import decode, encode
from ruby_schemas.rules import RuleFiredV1

FAST_BACKOFF = (0.05, 0.05, 0.05, 0.05)
Running = list[tuple[Runner, asyncio.Task[None]]]


def trigger_ids(envelopes: list[Envelope[Payload]]) -> list[str]:
    """The input ids that the echo outputs were caused by, sorted."""
    return sorted(e.data.trigger_id for e in envelopes if isinstance(e.data, RuleFiredV1))


def letters(envelopes: list[Envelope[Payload]]) -> list[DeadLetterV1]:
    found = [e.data for e in envelopes if isinstance(e.data, DeadLetterV1)]
    assert len(found) == len(envelopes), "the DLQ holds something that is not a dead letter"
    return found


def echo(subjects: Subjects, seen: list[str] | None = None) -> Handler:
    """A handler whose effect is one output message per input, linked to it."""

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        if seen is not None:
            seen.append(envelope.id)
        fired = RuleFiredV1(rule_id="echo", rule_version="v1", file="test", trigger_id=envelope.id)
        return [
            Outbound(
                subjects.rule("echo", "fired"),
                make_envelope(
                    fired, source="ruby/test", cause=envelope, message_id=f"echo.{envelope.id}"
                ),
            )
        ]

    return handle


def config(topo: Topology, **overrides: object) -> RunnerConfig:
    base = RunnerConfig(
        service="engine", stream=topo.stream(EVENTS).name, consumer=ENGINE, backoff=FAST_BACKOFF
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Running]:
    started: Running = []
    yield started
    for runner, task in started:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def start(
    nc: Client,
    topo: Topology,
    handler: Handler,
    running: Running,
    **overrides: object,
) -> Runner:
    runner = Runner(nc, topo.subjects, config(topo, **overrides), handler)
    task = asyncio.create_task(runner.run())
    running.append((runner, task))
    await runner.wait_started()
    return runner


async def read_subject(js: JetStreamContext, stream: str, subject: str) -> list[Envelope[Payload]]:
    """Every message stored on ``subject``, decoded, in stream order."""
    out: list[Envelope[Payload]] = []
    info = await js.stream_info(stream)
    seq = info.state.first_seq
    while seq <= info.state.last_seq:
        try:
            raw = await js.get_msg(stream, seq, subject=subject, next=True)
        except Exception:  # no more on that subject
            break
        out.append(decode(raw.data or b""))
        seq = (raw.seq or seq) + 1
    return out


async def consumer_settled(js: JetStreamContext, topo: Topology) -> bool:
    info = await js.consumer_info(topo.stream(EVENTS).name, ENGINE)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_outputs_are_stored_before_the_input_is_acked(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo = topology_applied
    ids = await publish_states(js, topo.subjects, 300)
    await start(nc, topo, echo(topo.subjects), running)
    await eventually(lambda: consumer_settled(js, topo), message="all inputs acked")
    outputs = await read_subject(js, topo.stream(EVENTS).name, topo.subjects.rule("echo", "fired"))
    assert trigger_ids(outputs) == sorted(ids)
    # Each output continues its input's automation run.
    assert all(
        o.causation_id == o.data.trigger_id for o in outputs if isinstance(o.data, RuleFiredV1)
    )


async def test_poison_pills_go_to_the_dlq_with_their_origin_while_good_messages_flow(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    poison = state_changed("light.poison", "on")
    attempts: list[int] = []
    inner = echo(s)

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        if envelope.id == poison.id:
            attempts.append(delivery.delivered)
            raise RuntimeError("this handler always fails on it")
        return await inner(envelope, delivery)

    good = await publish_states(js, s, 500)
    await js.publish(s.ha_state("light.garbage"), b"\xff not json", headers={"X-Origin": "test"})
    await js.publish(s.ha_state("light.poison"), encode(poison))
    good += await publish_states(js, s, 500)
    await start(nc, topo, handler, running)

    dlq_stream = topo.stream(DLQ).name
    await eventually(lambda: consumer_settled(js, topo), message="consumer drained")
    dead = letters(await read_subject(js, dlq_stream, s.dlq(topo.stream(EVENTS).name, ENGINE)))
    assert len(dead) == 2
    by_subject = {x.original_subject: x for x in dead}
    garbage = by_subject[s.ha_state("light.garbage")]
    assert garbage.reason == "undecodable"
    assert garbage.original_payload == b"\xff not json"  # byte-exact
    assert garbage.headers == {"X-Origin": "test"}
    assert garbage.delivery_count == 1
    assert garbage.stream == topo.stream(EVENTS).name
    assert garbage.consumer == ENGINE
    failing = by_subject[s.ha_state("light.poison")]
    assert failing.reason == "max_deliveries"
    assert "always fails" in failing.error
    max_deliver = topo.consumer(ENGINE).max_deliver
    assert attempts == list(range(1, max_deliver + 1))  # exactly MaxDeliver attempts
    assert failing.delivery_count == max_deliver
    assert failing.first_failed_at <= failing.last_failed_at

    outputs = await read_subject(js, topo.stream(EVENTS).name, s.rule("echo", "fired"))
    assert trigger_ids(outputs) == sorted(good)
    audits = await read_subject(
        js, topo.stream(AUDIT).name, s.audit("engine", "message_dead_lettered")
    )
    assert len(audits) == 2


async def test_a_permanent_error_is_dead_lettered_at_once(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    calls: list[int] = []

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        calls.append(delivery.delivered)
        raise PermanentError("unknown service light.explode")

    await publish_states(js, s, 1)
    await start(nc, topo, handler, running)
    await eventually(lambda: consumer_settled(js, topo))
    (letter,) = await read_subject(
        js, topo.stream(DLQ).name, s.dlq(topo.stream(EVENTS).name, ENGINE)
    )
    assert calls == [1]
    assert letter.data.reason == "permanent_error"  # type: ignore[attr-defined]


async def test_a_transient_error_is_retried_and_then_succeeds(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    calls: list[int] = []
    inner = echo(s)

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        calls.append(delivery.delivered)
        if delivery.delivered < 3:
            raise TransientError("HA is reconnecting")
        return await inner(envelope, delivery)

    await publish_states(js, s, 1)
    await start(nc, topo, handler, running)
    await eventually(lambda: consumer_settled(js, topo))
    assert calls == [1, 2, 3]
    assert len(await read_subject(js, topo.stream(EVENTS).name, s.rule("echo", "fired"))) == 1
    assert (await js.stream_info(topo.stream(DLQ).name)).state.messages == 0


@pytest.mark.slow
async def test_backpressure_bounds_in_flight_and_memory_stays_flat(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    total, bound = 50_000, 200

    async def slow(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        await asyncio.sleep(0.001)
        return []

    await publish_states(js, s, total, entities=100)
    process = psutil.Process()
    runner = await start(nc, topo, slow, running, max_inflight=bound, concurrency=32)
    samples: list[tuple[int, int, int]] = []  # (acked, in flight, rss)
    while runner.stats.acked < total:
        info = await js.consumer_info(topo.stream(EVENTS).name, ENGINE)
        samples.append((runner.stats.acked, runner.inflight, process.memory_info().rss))
        assert info.num_ack_pending <= topo.consumer(ENGINE).max_ack_pending
        await asyncio.sleep(0.05)
    assert runner.stats.max_inflight_seen <= bound
    assert max(inflight for _, inflight, _ in samples) <= bound
    assert max(inflight for _, inflight, _ in samples) > bound // 2  # it was under pressure
    # Memory: after the first tenth, RSS grows by less than 16 MiB over the remaining 45,000.
    warm = [rss for acked, _, rss in samples if acked >= total // 10]
    growth = (max(warm) - warm[0]) / 2**20
    print(
        f"\nbackpressure: {len(samples)} samples, max in flight {runner.stats.max_inflight_seen}"
        f"/{bound}, RSS {warm[0] / 2**20:.1f} -> {max(warm) / 2**20:.1f} MiB"
    )
    assert growth < 16, f"RSS grew by {growth:.1f} MiB"


async def test_long_handlers_are_kept_alive_with_in_progress(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    short = dataclasses.replace(topo.consumer(ENGINE), durable="shortwait", ack_wait=1.0)
    await apply_consumer(js, short)
    deliveries: list[int] = []

    async def slow(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        deliveries.append(delivery.delivered)
        await asyncio.sleep(3.0)  # three AckWaits
        return []

    await publish_states(js, s, 1)
    runner = await start(nc, topo, slow, running, consumer="shortwait", in_progress_interval=0.3)
    await eventually(lambda: runner.stats.acked == 1, within=15)
    assert deliveries == [1]


async def test_messages_with_the_same_order_key_are_handled_in_stream_order(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    seen: dict[str, list[int]] = {}

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        await asyncio.sleep(0.001 * (delivery.stream_seq % 3))  # jitter that would reorder
        seen.setdefault(delivery.subject, []).append(delivery.stream_seq)
        return []

    await publish_states(js, s, 600, entities=6)
    runner = await start(nc, topo, handler, running, order_key=lambda subject: subject)
    await eventually(lambda: runner.stats.acked == 600)
    assert len(seen) == 6
    for subject, seqs in seen.items():
        assert seqs == sorted(seqs), subject


async def test_the_runner_keeps_receiving_after_nats_server_restarts(
    nats_server_factory: ServerFactory, prefix: str, running: Running
) -> None:
    server = nats_server_factory()
    nc = await connect(NatsSettings(url=server.url, name="restart", reconnect_wait=0.1))
    js = nc.jetstream()
    topo = topology(Subjects(prefix))
    await apply_topology(js, topo)
    await publish_states(js, topo.subjects, 100)
    runner = await start(nc, topo, echo(topo.subjects), running, idle_heartbeat=0.2)
    await eventually(lambda: runner.stats.acked == 100)

    server.restart()
    await eventually(lambda: jetstream_ready(js), message="JetStream back after the restart")
    await publish_states(js, topo.subjects, 100)
    await eventually(lambda: runner.stats.acked == 200, message="messages after the restart")
    outputs = await read_subject(js, topo.stream(EVENTS).name, topo.subjects.rule("echo", "fired"))
    assert len({o.id for o in outputs}) == 200
    runner.stop()
    await nc.close()


async def test_the_runner_pulls_again_as_soon_as_its_connection_is_back(
    nats_server_factory: ServerFactory, prefix: str, running: Running
) -> None:
    # Heartbeats so rare that the watchdog cannot notice the lost pull requests within the
    # test's wait: only the reconnect callback can make the runner receive again in time.
    server = nats_server_factory()
    nc = await connect(NatsSettings(url=server.url, name="reconnect", reconnect_wait=0.1))
    js = nc.jetstream()
    topo = topology(Subjects(prefix))
    await apply_topology(js, topo)
    runner = await start(nc, topo, echo(topo.subjects), running, idle_heartbeat=60.0, expires=120.0)
    await publish_states(js, topo.subjects, 10)
    await eventually(lambda: runner.stats.acked == 10)
    repulls = runner.stats.repulls

    server.restart()
    await eventually(lambda: jetstream_ready(js), message="JetStream back after the restart")
    await publish_states(js, topo.subjects, 10)
    await eventually(
        lambda: runner.stats.acked == 20, within=20, message="messages after the restart"
    )
    assert runner.stats.repulls > repulls
    runner.stop()
    await nc.close()


async def test_stop_finishes_or_naks_in_flight_work_and_loses_nothing(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    seen: list[str] = []
    inner = echo(s, seen)

    async def slowish(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        await asyncio.sleep(0.01)
        return await inner(envelope, delivery)

    ids = await publish_states(js, s, 400)
    runner = Runner(nc, s, config(topo, drain_timeout=0.05), slowish)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.stats.acked >= 50)
    runner.stop()
    await asyncio.wait_for(task, 30)
    assert runner.inflight == 0
    assert runner.stats.acked < 400

    # A second runner (the restarted service) picks up everything that was not acked.
    await start(nc, topo, inner, running)
    await eventually(lambda: consumer_settled(js, topo))
    outputs = await read_subject(js, topo.stream(EVENTS).name, s.rule("echo", "fired"))
    assert sorted(set(trigger_ids(outputs))) == sorted(ids)
    assert len(outputs) == len(ids)  # deterministic output ids: stored once even if re-run


def test_a_runner_config_the_server_would_refuse_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="shorter than expires"):
        RunnerConfig(service="s", stream="S", consumer="c", expires=1.0, idle_heartbeat=1.0)


async def test_a_permanent_error_can_carry_outputs_published_with_the_dead_letter(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    inner = echo(s)

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        report = await inner(envelope, delivery)  # e.g. a "rejected" outcome
        raise PermanentError("unknown service", report)

    (only,) = await publish_states(js, s, 1)
    await start(nc, topo, handler, running)
    await eventually(lambda: consumer_settled(js, topo))
    outputs = await read_subject(js, topo.stream(EVENTS).name, s.rule("echo", "fired"))
    assert trigger_ids(outputs) == [only]
    dead = letters(
        await read_subject(js, topo.stream(DLQ).name, s.dlq(topo.stream(EVENTS).name, ENGINE))
    )
    assert [d.reason for d in dead] == ["permanent_error"]


def _hostile(change: str) -> bytes:
    """A state change made poisonous in one way the contracts refuse (issue 12)."""
    document = json.loads(encode(state_changed("light.hostile", "on")))
    if change == "date past year 9999 in UTC":
        document["time"] = "9999-12-31T23:59:59-23:59"  # once an OverflowError: retried
    elif change == "CR LF in the message id":
        document["id"] = "x\r\nNats-Expected-Stream: EVIL"  # once accepted and sent on
    else:
        document["data"]["new_state"]["attributes"]["n"] = float("nan")  # once re-encoded null
    return json.dumps(document).encode()


HOSTILE = {
    "date past year 9999 in UTC": "time",
    "CR LF in the message id": "id",
    "NaN in the attributes": "data.new_state.attributes.n",
}


async def test_hostile_messages_are_dead_lettered_at_once_without_unsafe_headers(
    nc: Client, js: JetStreamContext, topology_applied: Topology, running: Running
) -> None:
    topo, s = topology_applied, topology_applied.subjects
    seen: list[str] = []
    payloads = [_hostile(change) for change in HOSTILE]
    for n, payload in enumerate(payloads):
        headers = {"X-Origin": "test", "X-Ctl": "a\x01b", "X-Tab": "a\tb", "X-N": str(n)}
        await js.publish(s.ha_state("light.hostile"), payload, headers=headers)
    good = await publish_states(js, s, 20)
    await start(nc, topo, echo(s, seen), running)

    await eventually(lambda: consumer_settled(js, topo), message="consumer drained")
    dead = letters(
        await read_subject(js, topo.stream(DLQ).name, s.dlq(topo.stream(EVENTS).name, ENGINE))
    )
    assert len(dead) == len(HOSTILE)
    for letter in dead:
        n = int(letter.headers["X-N"])
        change = list(HOSTILE)[n]
        assert letter.reason == "undecodable", change
        assert letter.delivery_count == 1, change  # at once, not after MaxDeliver retries
        assert f": {HOSTILE[change]}: " in letter.error, (change, letter.error)
        assert letter.headers == {"X-Origin": "test", "X-N": letter.headers["X-N"]}
        assert letter.original_payload == payloads[n]
    assert sorted(seen) == sorted(good)  # the handler saw every good message, no hostile one
