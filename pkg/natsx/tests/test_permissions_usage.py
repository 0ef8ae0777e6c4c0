"""The services' real ways of working fit inside their permissions (TLS + NKEY server).

The matrix (``test_permissions_matrix.py``) checks each grant alone; these run what the code
does end to end as each identity: nats-py's KV client (open, create, update, delete), every
way of settling a delivery, and the pull-consumer runner with its DLQ and audit records.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ruby_ctl.probe import Violations, watching_violations
from ruby_ctl.testing import Installation
from ruby_natsx.connection import NatsSettings, flushed
from ruby_natsx.credentials import new_user_seed
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.testing import eventually, state_changed
from ruby_natsx.topology import AUDIT_SINK, COMMANDS, DLQ, ENGINE, EVENTS, GATEWAY
from ruby_schemas.base import Payload
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.registry import decode, encode
from ruby_schemas.rules import RuleFiredV1


def _unique() -> str:
    return uuid.uuid4().hex[:10]


async def test_a_connection_takes_replies_on_its_own_inbox_and_hides_its_seed(
    installation: Installation,
) -> None:
    nc = await installation.connect(GATEWAY)
    try:
        assert nc.new_inbox().startswith("_INBOX_gateway.")
        info = await nc.jetstream().stream_info(installation.topology.stream(COMMANDS).name)
        assert info.config.name == installation.topology.stream(COMMANDS).name
    finally:
        await nc.close()
    seed = new_user_seed()
    settings = NatsSettings(url="tls://127.0.0.1:1", name="x", nkey_seed=seed, identity=GATEWAY)
    assert seed not in repr(settings)
    assert seed not in str(settings)
    assert "[REDACTED]" in repr(settings)


async def test_services_use_their_buckets_through_the_kv_client(
    installation: Installation,
) -> None:
    bucket = {name: f"{installation.prefix}_{name}" for name in ("projection", "idempotency")}
    gateway = await installation.connect(GATEWAY)
    engine = await installation.connect(ENGINE)
    try:
        key = f"light.{_unique()}"
        projection = await gateway.jetstream().key_value(bucket["projection"])
        await projection.put(key, b"on")
        seen = await (await engine.jetstream().key_value(bucket["projection"])).get(key)
        assert seen.value == b"on"

        # The command ledger's moves, the gateway's alone: claim, complete, release.
        ledger = await gateway.jetstream().key_value(bucket["idempotency"])
        claim = f"cmd.{_unique()}"
        revision = await ledger.create(claim, b"pending")
        revision = await ledger.update(claim, b"done", last=revision)
        assert (await ledger.get(claim)).value == b"done"
        await ledger.delete(claim, last=revision)

        timers = await engine.jetstream().key_value(f"{installation.prefix}_timers")
        await timers.put(f"rule.{_unique()}", b"deadline")
        for identity, nc in ((GATEWAY, gateway), (ENGINE, engine)):
            status = await nc.jetstream().key_value(f"{installation.prefix}_status")
            await status.put(identity, b"up")
    finally:
        await gateway.close()
        await engine.close()


async def test_a_delivery_can_be_kept_alive_nakked_and_terminated(
    installation: Installation,
) -> None:
    topo, s = installation.topology, installation.subjects
    commands = topo.stream(COMMANDS).name
    engine = await installation.connect(ENGINE)
    gateway = await installation.connect(GATEWAY)
    try:
        subject = s.command("light", f"turn_on_{_unique()}")
        await engine.jetstream().publish(subject, b"{}")
        sub = await gateway.jetstream().pull_subscribe_bind(GATEWAY, stream=commands)
        msg = await _next_on(sub, subject)
        await msg.in_progress()
        await msg.nak(delay=0)
        msg = await _next_on(sub, subject)
        assert msg.metadata.num_delivered == 2
        await msg.term()
        await gateway.flush()

        async def gone() -> bool:  # a terminated message leaves the work queue
            info = await gateway.jetstream().consumer_info(commands, GATEWAY)
            return bool(info.num_ack_pending == 0)

        await eventually(gone, message="the terminated command left the work queue")
        await sub.unsubscribe()
    finally:
        await gateway.close()
        await engine.close()


async def _next_on(sub: JetStreamContext.PullSubscription, subject: str) -> Msg:
    """The next delivery on ``subject``; others (left by other tests) are acked on the way."""
    for _ in range(100):
        (msg,) = await sub.fetch(1, timeout=5)
        if msg.subject == subject:
            return msg
        await msg.ack()
    raise AssertionError(f"no delivery on {subject}")


async def test_the_engine_runner_works_within_the_engines_permissions(
    installation: Installation,
) -> None:
    topo, s = installation.topology, installation.subjects
    events = topo.stream(EVENTS).name
    gateway = await installation.connect(GATEWAY)
    engine = await installation.connect(ENGINE)
    operator = await installation.connect(OPERATOR)
    tag = _unique()

    async def echo(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        fired = RuleFiredV1(rule_id=tag, rule_version="v1", file="test", trigger_id=envelope.id)
        out = make_envelope(
            fired, source="ruby/engine", cause=envelope, message_id=f"e.{envelope.id}"
        )
        return [Outbound(s.rule(tag, "fired"), out)]

    runner = Runner(engine, s, RunnerConfig(service=ENGINE, stream=events, consumer=ENGINE), echo)
    task = asyncio.create_task(runner.run())
    try:
        await runner.wait_started()
        good = state_changed(f"light.{tag}", "on")
        poison = s.ha_state(f"light.poison_{tag}")
        await gateway.jetstream().publish(s.ha_state(f"light.{tag}"), encode(good))
        await gateway.jetstream().publish(poison, b"not json")

        async def fired() -> bool:
            return await _on_subject(operator, events, s.rule(tag, "fired")) is not None

        async def dead_lettered() -> bool:
            raw = await _on_subject(operator, topo.stream(DLQ).name, s.dlq(events, ENGINE), poison)
            return raw is not None

        await eventually(fired, message="the engine's output was stored")
        await eventually(dead_lettered, message="the poison message was dead-lettered")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        for nc in (gateway, engine, operator):
            await nc.close()


async def _on_subject(
    nc: Client, stream: str, subject: str, original: str | None = None
) -> bytes | None:
    """The last message on ``subject`` (for a dead letter: the one from ``original``)."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    seq = info.state.last_seq
    while seq >= info.state.first_seq:
        try:
            raw = await js.get_msg(stream, seq)
        except Exception:  # deleted or expired: keep looking
            seq -= 1
            continue
        if raw.subject == subject and raw.data:
            if original is None:
                return raw.data
            try:
                letter = decode(raw.data).data
            except ContractError:  # another test's probe of the shared installation's DLQ
                seq -= 1
                continue
            if isinstance(letter, DeadLetterV1) and letter.original_subject == original:
                return raw.data
        seq -= 1
    return None


async def test_the_gateway_asks_the_audit_sink_answers_once_and_no_one_else_can(
    installation: Installation,
) -> None:
    """Request/reply as the audit API uses it (ADR-0036), on the real server: the sink replies
    to the gateway's inbox through ``allow_responses``, once per request; the engine cannot
    ask and the gateway cannot answer."""
    query = installation.subjects.api("audit", "query")
    with watching_violations() as violations:
        gateway = await installation.connect(GATEWAY)
        sink = await installation.connect(AUDIT_SINK)
        engine = await installation.connect(ENGINE)
        replied: list[str] = []

        async def answer(msg: Msg) -> None:
            replied.append(msg.reply)
            await msg.respond(b"first")
            await msg.respond(b"second")  # past allow_responses' max: the server refuses it

        try:
            sub = await sink.subscribe(query, queue=AUDIT_SINK, cb=answer)
            await flushed(sink)
            inbox = gateway.new_inbox()
            replies = await gateway.subscribe(inbox)
            await gateway.publish(query, b"{}", reply=inbox)
            assert (await replies.next_msg(timeout=5)).data == b"first"
            await eventually(lambda: _seen(violations, replied[0]), message="second refused")
            with pytest.raises(nats.errors.TimeoutError):
                await replies.next_msg(timeout=0.3)  # the refused reply never arrives

            # Nobody else asks; nobody but the sink answers.
            before = len(violations.seen)
            await engine.publish(query, b"{}")
            await engine.flush()
            await gateway.subscribe(query)
            await gateway.flush()
            await eventually(
                lambda: len(violations.seen) >= before + 2, message="both refusals reported"
            )
            refused = " ".join(violations.seen[before:])
            assert "publish" in refused
            assert "subscription" in refused
            assert query in refused
            await sub.unsubscribe()
        finally:
            for nc in (gateway, sink, engine):
                await nc.close()


def _seen(violations: Violations, subject: str) -> bool:
    return any(f'"{subject.lower()}"' in seen for seen in violations.seen)
