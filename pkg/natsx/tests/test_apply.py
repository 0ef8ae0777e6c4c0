"""Streams, consumers and buckets land on a real nats-server exactly as declared, idempotently."""

import dataclasses

import pytest
from nats.js import JetStreamContext
from nats.js.errors import APIError

from ruby_natsx import tuning
from ruby_natsx.apply import (
    Action,
    IncompatibleChangeError,
    LockedStreamError,
    apply_stream,
    apply_topology,
)
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import (
    AUDIT,
    COMMANDS,
    DLQ,
    EVENTS,
    GATEWAY,
    IDEMPOTENCY,
    PROJECTION,
    Discard,
    Retention,
    Topology,
    topology,
)


async def test_apply_creates_everything_with_the_declared_configuration(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    for spec in topo.streams:
        info = await js.stream_info(spec.name)
        assert info.config.subjects == list(spec.subjects)
    events = (await js.stream_info(topo.stream(EVENTS).name)).config
    assert events.max_age == tuning.EVENTS_MAX_AGE
    assert events.duplicate_window == tuning.EVENTS_DUPLICATE_WINDOW
    commands = (await js.stream_info(topo.stream(COMMANDS).name)).config
    assert commands.retention == "workqueue"
    audit = (await js.stream_info(topo.stream(AUDIT).name)).config
    assert audit.deny_delete
    assert audit.deny_purge
    dlq = (await js.stream_info(topo.stream(DLQ).name)).config
    assert dlq.max_age == tuning.DLQ_MAX_AGE

    for consumer in topo.consumers:
        cfg = (await js.consumer_info(consumer.stream, consumer.durable)).config
        assert cfg.max_ack_pending == tuning.MAX_ACK_PENDING
        assert cfg.max_deliver == tuning.MAX_DELIVER
        wanted = tuning.COMMAND_ACK_WAIT if consumer.durable == GATEWAY else tuning.ACK_WAIT
        assert cfg.ack_wait == wanted
        assert not cfg.backoff  # BackOff would shorten AckWait; the runner naks instead
        assert cfg.ack_policy == "explicit"

    # Buckets are usable through the ordinary KV client, with their TTLs.
    kv = await js.key_value(topo.bucket(PROJECTION).bucket)
    await kv.put("light.kitchen", b"on")
    assert (await kv.get("light.kitchen")).value == b"on"
    ledger = await js.stream_info(topo.bucket(IDEMPOTENCY).stream().name)
    assert ledger.config.max_age == tuning.IDEMPOTENCY_TTL


async def test_applying_twice_changes_nothing(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    changes = await apply_topology(js, topology_applied)
    assert [c.action for c in changes] == [Action.UNCHANGED] * len(changes)
    assert len(changes) == 4 + 5 + 3  # streams, buckets, consumers


async def test_the_first_apply_reports_creations(js: JetStreamContext, subjects: Subjects) -> None:
    topo = topology(subjects)
    try:
        changes = await apply_topology(js, topo)
        assert {c.action for c in changes} == {Action.CREATED}
        assert {c.kind for c in changes} == {"stream", "bucket", "consumer"}
    finally:
        for spec in (*topo.streams, *(b.stream() for b in topo.buckets)):
            await js.delete_stream(spec.name)


async def test_an_updatable_change_is_applied_and_reported(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    events = topology_applied.stream(EVENTS)
    changed = dataclasses.replace(events, max_age=3600.0)
    change = await apply_stream(js, changed)
    assert change.action is Action.UPDATED
    assert [d.field for d in change.diffs] == ["max_age"]
    assert (await js.stream_info(events.name)).config.max_age == 3600.0

    consumer = topology_applied.consumers[0]
    topo = dataclasses.replace(
        topology_applied,
        streams=(*topology_applied.streams[:0], changed, *topology_applied.streams[1:]),
        consumers=(dataclasses.replace(consumer, max_deliver=7), *topology_applied.consumers[1:]),
    )
    changes = {c.name: c for c in await apply_topology(js, topo)}
    assert changes[f"{consumer.stream}/{consumer.durable}"].action is Action.UPDATED
    info = await js.consumer_info(consumer.stream, consumer.durable)
    assert info.config.max_deliver == 7


async def test_an_incompatible_stream_change_is_reported_never_ignored(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    # The stream holds a consumer; JetStream refuses to turn it into a work queue in place.
    events = topology_applied.stream(EVENTS)
    with pytest.raises(IncompatibleChangeError) as err:
        await apply_stream(js, dataclasses.replace(events, retention=Retention.WORK_QUEUE))
    assert err.value.name == events.name
    assert "retention: 'limits' -> 'workqueue'" in str(err.value)
    assert (await js.stream_info(events.name)).config.retention == "limits"


async def test_relaxing_the_audit_protection_is_refused_even_breaking_the_glass(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    audit = topology_applied.stream(AUDIT)
    relaxed = dataclasses.replace(audit, deny_purge=False, deny_delete=False)
    with pytest.raises(IncompatibleChangeError) as err:
        await apply_stream(js, relaxed, break_glass=True)  # the server refuses it
    assert "deny_delete" in str(err.value)
    assert not isinstance(err.value, LockedStreamError)
    assert (await js.stream_info(audit.name)).config.deny_purge


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_age": 1.0}, "max_age"),
        ({"discard": Discard.OLD}, "discard"),
        ({"subjects": ("elsewhere.>",)}, "subjects"),
    ],
)
async def test_a_locked_stream_that_differs_is_left_alone_naming_the_break_glass(
    js: JetStreamContext, topology_applied: Topology, change: dict[str, object], field: str
) -> None:
    audit = topology_applied.stream(AUDIT)
    before = (await js.stream_info(audit.name)).config
    topo = dataclasses.replace(
        topology_applied,
        streams=(dataclasses.replace(audit, **change),),  # type: ignore[arg-type]
    )
    with pytest.raises(LockedStreamError) as err:
        await apply_topology(js, topo)
    text = str(err.value)
    assert f"{field}:" in text, text
    assert "rubyctl up --audit-break-glass" in text, text
    assert (await js.stream_info(audit.name)).config == before


async def test_breaking_the_glass_applies_a_locked_streams_change(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    audit = dataclasses.replace(topology_applied.stream(AUDIT), description="moved on purpose")
    change = await apply_stream(js, audit, break_glass=True)
    assert change.action is Action.UPDATED
    assert (await js.stream_info(audit.name)).config.description == "moved on purpose"


async def test_an_incompatible_consumer_change_is_reported(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    consumer = topology_applied.consumers[0]
    # JetStream fixes a pull consumer's MaxWaiting at creation.
    bad = dataclasses.replace(consumer, max_waiting=consumer.max_waiting * 2)
    topo = dataclasses.replace(topology_applied, consumers=(bad,))
    with pytest.raises(IncompatibleChangeError) as err:
        await apply_topology(js, topo)
    assert "max_waiting" in str(err.value)
    info = await js.consumer_info(consumer.stream, consumer.durable)
    assert info.config.max_waiting == consumer.max_waiting


async def test_the_audit_stream_refuses_purge_and_delete(
    js: JetStreamContext, topology_applied: Topology, subjects: Subjects
) -> None:
    audit = topology_applied.stream(AUDIT)
    ack = await js.publish(subjects.audit("gateway", "test"), b"{}")
    with pytest.raises(APIError):
        await js.purge_stream(audit.name)
    with pytest.raises(APIError):
        await js.delete_msg(audit.name, ack.seq)
    assert (await js.stream_info(audit.name)).state.messages == 1
