"""Home Assistant's start and shutdown, and events fired on its bus, with a REAL Home Assistant
(ADR-0032).

The gateway runs in-process as the installation's gateway identity, the engine in-process as
its own (TLS + NKEY). A ``fire_event`` rule puts its event on Home Assistant's bus; a real
restart of Home Assistant (``stop.sh``, ``start.sh``) fires the ``homeassistant: start`` rule
once and the ``shutdown`` rule once, and a restart of the gateway fires neither. On the way,
what the simulator copies is checked: a client is sent no ``homeassistant_stop``, and its
connection is closed with a normal close frame. Entities: ``input_boolean.c`` and ``d``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_ctl.testing import Installation
from ruby_engine.engine import Engine
from ruby_engine.testing import running_engine
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.testing import HaClient
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import ENGINE, EVENTS, GATEWAY, Topology
from ruby_runtime.secret import Secret

if TYPE_CHECKING:
    from .conftest import HomeAssistant

RULES = """
rules:
  - id: ha_started_turns_c_on
    description: input_boolean.c goes on whenever Home Assistant has started
    triggers:
      - {kind: homeassistant, event: start}
    actions:
      - {kind: call, service: input_boolean.turn_on, target: {entity_id: input_boolean.c}}
  - id: ha_stopping_is_told
    description: others hear that Home Assistant stops
    triggers:
      - {kind: homeassistant, event: shutdown}
    actions:
      - {kind: publish, event_type: ha_stopping}
  - id: d_rings_on_the_bus
    description: input_boolean.d turning on fires an event on Home Assistant's bus
    triggers:
      - {kind: state, entity_id: input_boolean.d, to: "on"}
    actions:
      - kind: fire_event
        event_type: ruby_test.rang
        data: {by: "{{ trigger.entity_id }}"}
"""


@pytest_asyncio.fixture
async def engine(secure_installation: Installation, tmp_path: Path) -> AsyncIterator[Engine]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "lifecycle.yaml").write_text(RULES)
    nc = await secure_installation.connect("engine")
    try:
        async with running_engine(nc, secure_installation.subjects, rules) as running:
            yield running
    finally:
        await nc.drain()


@pytest_asyncio.fixture
async def operator(secure_installation: Installation) -> AsyncIterator[Client]:
    nc = await secure_installation.connect("operator")
    yield nc
    await nc.drain()


def gateway(
    installation: Installation, home_assistant: HomeAssistant
) -> AbstractAsyncContextManager[Gateway]:
    config = BridgeConfig(url=home_assistant.url, token=Secret(home_assistant.token, "ha token"),
                          ping_interval=1.0, ping_timeout=2.0, backoff_initial=0.1,
                          backoff_max=0.5)  # fmt: skip
    return running_secure_gateway(installation, config, backoff=(0.2,) * 4)


async def state(client: HaClient, entity: str) -> str:
    reply = await client.command("get_states")
    return str(next(s["state"] for s in reply["result"] if s["entity_id"] == entity))


async def switch(client: HaClient, entity: str, on: bool) -> None:
    service = "turn_on" if on else "turn_off"
    reply = await client.command(
        "call_service", domain="input_boolean", service=service, target={"entity_id": entity}
    )
    assert reply["success"], reply


async def counts(js: JetStreamContext, topo: Topology) -> dict[str, int]:
    """Lifecycle announcements and ``ha_stopping`` rule events in EVENTS, by name."""
    info = await js.stream_info(topo.stream(EVENTS).name, subjects_filter=topo.subjects.events_all)
    subjects = info.state.subjects or {}
    return {
        "start": subjects.get(topo.subjects.ha_lifecycle("start"), 0),
        "shutdown": subjects.get(topo.subjects.ha_lifecycle("shutdown"), 0),
        "ha_stopping": subjects.get(topo.subjects.rule("ha_stopping_is_told", "ha_stopping"), 0),
    }


async def until_closed(client: HaClient) -> tuple[list[Any], str]:
    """Every message until Home Assistant ends the connection, and how it ended."""
    seen: list[Any] = []
    while True:
        try:
            seen.append(await client.receive(timeout=60))
        except ConnectionError as exc:
            return seen, str(exc)


async def test_fire_event_reaches_the_bus_and_start_and_shutdown_rules_fire_once_per_restart(
    secure_installation: Installation,
    home_assistant: HomeAssistant,
    engine: Engine,
    operator: Client,
) -> None:
    inst, js = secure_installation, operator.jetstream()
    topo = inst.topology
    observer = await home_assistant.client()
    for entity in ("input_boolean.c", "input_boolean.d"):
        await switch(observer, entity, on=False)
    rang = await observer.subscribe("ruby_test.rang")  # a dot: HA takes any event type

    async def settled() -> bool:
        return await consumers_idle(js, topo, ENGINE, GATEWAY)

    async with gateway(inst, home_assistant) as gw:
        await eventually(lambda: gw.bridge.lifecycle.run is not None, message="run recorded")

        # 1. fire_event: on Home Assistant's bus, once, in the gateway user's context.
        await switch(observer, "input_boolean.d", on=True)
        event = await observer.next_event(timeout=30)
        assert event["id"] == rang
        assert event["event"]["event_type"] == "ruby_test.rang"
        assert event["event"]["data"] == {"by": "input_boolean.d"}
        assert event["event"]["context"]["user_id"]  # fired by a user: the gateway's token
        await eventually(settled, message="idle")
        assert (await observer.command("ping"))["type"] == "pong"  # all before it arrived
        assert not [m for m in observer.inbox if m.get("type") == "event"]  # once
        assert await counts(js, topo) == {"start": 0, "shutdown": 0, "ha_stopping": 0}
        assert await state(observer, "input_boolean.c") == "off"

        # 2. A real restart of Home Assistant: one shutdown, one start.
        watcher = await home_assistant.client()
        await watcher.subscribe("homeassistant_stop")
        await watcher.subscribe("homeassistant_final_write")
        await observer.close()
        closing = asyncio.create_task(until_closed(watcher))
        await home_assistant.restart_with(lambda: None)
        seen, ended = await closing
        await watcher.close()
        assert seen == []  # Home Assistant cancels its connections before telling them
        assert "CLOSE 1000" in ended, ended  # a normal close frame (what the simulator sends)
        with_ha = await home_assistant.client()
        try:
            await eventually(
                lambda: _is(with_ha, "input_boolean.c", "on"), within=60, message="c on"
            )
            await eventually(settled, message="idle")
            assert await counts(js, topo) == {"start": 1, "shutdown": 1, "ha_stopping": 1}
            assert [(a.event, a.seen) for a in gw.bridge.lifecycle.announced] in (
                [("shutdown", "live"), ("start", "reconnect")],
                [("shutdown", "live"), ("start", "live")],  # reconnected while it started
            )
            await switch(with_ha, "input_boolean.c", on=False)
        finally:
            await with_ha.close()
        known = gw.bridge.lifecycle.run
        assert known is not None

    # 3. The gateway alone restarts: the same run, nothing announced.
    async with gateway(inst, home_assistant) as gw:
        await eventually(
            lambda: (run := gw.bridge.lifecycle.run) is not None and run.seen > known.seen,
            message="the run found again",
        )
        assert gw.bridge.lifecycle.run.boot == known.boot  # type: ignore[union-attr]  # just found
        await eventually(settled, message="idle")
        assert gw.bridge.lifecycle.announced == []
    assert await counts(js, topo) == {"start": 1, "shutdown": 1, "ha_stopping": 1}
    after = await home_assistant.client()
    try:
        assert await state(after, "input_boolean.c") == "off"
    finally:
        await after.close()


async def _is(client: HaClient, entity: str, value: str) -> bool:
    return await state(client, entity) == value
