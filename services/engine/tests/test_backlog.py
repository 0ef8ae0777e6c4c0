"""Recovery without stale effects (DESIGN promises 10 and 11), engine and gateway together:

- the engine killed while changes keep coming: after its restart only the latest change per
  entity fires (the others are traced as superseded), so a device does not flap;
- a change that reaches the engine late (a backlog its view cannot see: nats-server restarted
  while the gateway kept sending) gives commands that name it, so the gateway can drop them
  once Home Assistant has changed that entity again (tested with the gateway in
  ``services/gateway/tests/test_command_recovery.py``);
- the gateway killed after JetStream stored a change and before its projection learnt it: the
  reconciled change is judged against what the rules saw, so a mirror never stays wrong.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_ctl.testing import Installation
from ruby_engine.testing import engine_process, engine_ready, running_engine
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.projection import load_projection
from ruby_gateway.testing import Gateway, running_gateway, running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import COMMANDS, ENGINE, EVENTS, GATEWAY, PROJECTION, STATUS, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.commands import CallServiceV1, TriggerChange
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.ha_events import EntityState, StateChangedV1
from ruby_schemas.registry import decode, encode

MIRROR = """
rules:
  - id: fan_follows_guests_on
    description: the fan mirrors guest mode (on)
    triggers: [{kind: state, entity_id: input_boolean.guest_mode, to: "on"}]
    actions: [{kind: call, service: switch.turn_on, target: {entity_id: switch.fan}}]
  - id: fan_follows_guests_off
    description: the fan mirrors guest mode (off)
    triggers: [{kind: state, entity_id: input_boolean.guest_mode, to: "off"}]
    actions: [{kind: call, service: switch.turn_off, target: {entity_id: switch.fan}}]
"""
SOURCE, MIRRORED = "input_boolean.guest_mode", "switch.fan"


def config(hasim: Simulator) -> BridgeConfig:
    return BridgeConfig(
        url=hasim.url,
        token=Secret(hasim.token, "ha token"),
        ping_interval=0.5,
        ping_timeout=0.5,
        backoff_initial=0.05,
        backoff_max=0.2,
    )


@pytest_asyncio.fixture
async def secure_gateway(
    secure_installation: Installation, hasim: Simulator
) -> AsyncIterator[Gateway]:
    async with running_secure_gateway(secure_installation, config(hasim), backoff=(0.1,) * 4) as gw:
        yield gw


async def test_an_engine_restarted_after_a_backlog_fires_only_the_latest_change(
    secure_installation: Installation, secure_gateway: Gateway, hasim: Simulator, tmp_path: Path
) -> None:
    inst = secure_installation
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mirror.yaml").write_text(MIRROR)
    hasim.set_state(SOURCE, "on")
    hasim.set_state(MIRRORED, "on")
    operator = await inst.connect("operator")
    js = operator.jetstream()
    status = await js.key_value(inst.topology.bucket(STATUS).bucket)
    started = datetime.now(UTC)

    def ready() -> Awaitable[bool]:
        return engine_ready(status, started)

    env = {**os.environ, **inst.environ(), "RUBY_RULES_DIR": str(rules)}
    engine = engine_process(env, tmp_path / "engine.log")
    try:
        await engine.start()
        await eventually(ready, within=60, message="engine ready")
        await eventually(lambda: consumers_idle(js, inst.topology, ENGINE, GATEWAY), within=20)
        on_before = hasim.calls[("switch", "turn_on", MIRRORED)]
        off_before = hasim.calls[("switch", "turn_off", MIRRORED)]
        await engine.kill9()
        for value in ["off", "on"] * 3 + ["off"]:  # 7 changes while no engine runs
            hasim.set_state(SOURCE, value)
        last = hasim.states[SOURCE].last_updated
        projection = inst.topology.bucket(PROJECTION).bucket

        async def projected() -> bool:  # the gateway stored all of them
            known = (await load_projection(operator, projection)).get(SOURCE)
            return known is not None and known.last_updated == last

        await eventually(projected, within=20, message="the last change projected")
        started = datetime.now(UTC)
        await engine.start()
        await eventually(ready, within=60, message="engine ready again")
        await eventually(lambda: hasim.states[MIRRORED].state == "off", within=20)
        await eventually(lambda: consumers_idle(js, inst.topology, ENGINE, GATEWAY), within=20)
        assert hasim.calls[("switch", "turn_on", MIRRORED)] == on_before  # no flapping
        assert hasim.calls[("switch", "turn_off", MIRRORED)] == off_before + 1
        skipped = [line for line in engine.log.read_text().splitlines() if "superseded" in line]
        assert len(skipped) == 6, skipped  # 3 on and 3 off, each traced as superseded
    finally:
        await engine.stop()
        await operator.drain()


async def test_the_commands_of_a_change_that_reached_the_engine_late_name_it(
    nc: Client, js: JetStreamContext, topology_applied: Topology, tmp_path: Path
) -> None:
    topo = topology_applied
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mirror.yaml").write_text(MIRROR)
    at = datetime.now(UTC) - timedelta(minutes=2)
    change = StateChangedV1(
        entity_id=SOURCE,
        old_state=EntityState(state="off", last_changed=at, last_updated=at),
        new_state=EntityState(
            state="on",
            last_changed=at + timedelta(seconds=1),
            last_updated=at + timedelta(seconds=2),
        ),
        context_id=new_id(),
    )
    sent = make_envelope(change, source="ruby/gateway", time=at + timedelta(seconds=2))
    await js.publish(topo.subjects.ha_state(SOURCE), encode(sent),
                     headers={"Nats-Msg-Id": sent.id})  # fmt: skip
    async with running_engine(nc, topo.subjects, rules):
        await eventually(lambda: consumers_idle(js, topo, ENGINE), within=20)
    commands = await stored(js, topo.stream(COMMANDS).name)
    assert [(c.service, c.late_trigger) for c in commands] == [
        ("turn_on", TriggerChange(entity_id=SOURCE, last_changed=at + timedelta(seconds=1)))
    ]


async def stored(js: JetStreamContext, stream: str) -> list[CallServiceV1]:
    """Every command in ``stream``, in order."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        payload = decode((await js.get_msg(stream, seq)).data or b"").data
        assert isinstance(payload, CallServiceV1)
        out.append(payload)
    return out


async def test_a_change_stored_but_not_projected_when_the_gateway_died_is_not_lost(
    nc: Client, js: JetStreamContext, topology_applied: Topology, hasim: Simulator, tmp_path: Path
) -> None:
    topo = topology_applied
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mirror.yaml").write_text(MIRROR)
    hasim.set_state(SOURCE, "off")
    hasim.set_state(MIRRORED, "off")
    bucket = topo.bucket(PROJECTION).bucket
    async with running_engine(nc, topo.subjects, rules):
        async with running_gateway(nc, topo.subjects, config(hasim), owner="gw-1",
                                   backoff=(0.1,) * 4):  # fmt: skip
            await eventually(lambda: consumers_idle(js, topo, ENGINE, GATEWAY), within=20)
        # What the killed gateway left: guest mode off -> on stored in EVENTS, the projection
        # still at off; then guest mode went back to off while no gateway ran.
        before = hasim.states[SOURCE]
        now_on = hasim.set_state(SOURCE, "on")
        change = StateChangedV1.model_validate(
            {
                "entity_id": SOURCE,
                "old_state": entity_state(before),
                "new_state": entity_state(now_on),
                "context_id": now_on.context.id,
            }
        )
        message_id = f"ha.{SOURCE}.{now_on.last_updated.isoformat()}"
        envelope = make_envelope(change, source="ruby/gateway", message_id=message_id)
        headers = {"Nats-Msg-Id": message_id}
        subject = topo.subjects.ha_state(SOURCE)
        await js.publish(
            subject, encode(envelope), headers=headers, stream=topo.stream(EVENTS).name
        )
        hasim.set_state(SOURCE, "off")
        projection = await load_projection(nc, bucket)
        assert projection.get(SOURCE).state == "off"  # type: ignore[union-attr]

        async with running_gateway(nc, topo.subjects, config(hasim), owner="gw-2",
                                   backoff=(0.1,) * 4, projection=projection):  # fmt: skip
            await eventually(lambda: consumers_idle(js, topo, ENGINE, GATEWAY), within=20)
            await eventually(lambda: hasim.states[MIRRORED].state == "off", within=20)
            # The stale turn_on (sent while no gateway ran) never runs after the turn_off.
            assert hasim.calls[("switch", "turn_off", MIRRORED)] >= 1
            assert hasim.states[MIRRORED].state == hasim.states[SOURCE].state == "off"


def entity_state(state: object) -> dict[str, object]:
    raw = state.as_dict()  # type: ignore[attr-defined]
    return {k: raw[k] for k in ("state", "attributes", "last_changed", "last_updated")}
