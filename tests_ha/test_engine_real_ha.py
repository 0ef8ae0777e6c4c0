"""The engine against a real Home Assistant, through the real gateway, as processes would run.

The gateway runs in-process as the installation's gateway identity; the engine runs as its own
process (``ruby-engine``, TLS + NKEY, secrets from OpenBao) so it can be killed with SIGKILL.
Entities: ``input_boolean.c|d|e`` (``a`` and ``b`` belong to HA's own automations), and for
the template trigger ``input_number.level`` and ``input_number.lamp_brightness``. The
observer (``ha_ws``) counts the service calls HA really executed (``call_service`` events).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_ctl.testing import Installation
from ruby_engine.testing import engine_process, engine_ready
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.testing import HaClient
from ruby_natsx.testing import ServiceProcess, consumers_idle, eventually
from ruby_natsx.topology import ENGINE, EVENTS, GATEWAY, STATUS, TIMERS
from ruby_rules.engine import read_record as read_timer
from ruby_rules.solar import Place, correction, next_sun_event
from ruby_runtime.secret import Secret
from ruby_schemas.ha_events import EntityState
from ruby_schemas.status import RulesRecord, read_record

if TYPE_CHECKING:
    from .conftest import HomeAssistant

RULES = """
rules:
  - id: c_turns_d_on
    description: when c turns on, turn d on
    triggers:
      - {kind: state, entity_id: input_boolean.c, to: "on"}
    actions:
      - {kind: call, service: input_boolean.turn_on, target: {entity_id: input_boolean.d}}
  - id: e_quiet_turns_d_off
    description: when e has been off for 3 seconds, turn d off
    triggers:
      - {kind: state, entity_id: input_boolean.e, to: "off", for: 3s}
    actions:
      - {kind: call, service: input_boolean.turn_off, target: {entity_id: input_boolean.d}}
"""
TIMER_KEY = "for.e_quiet_turns_d_off.0.input_boolean.e"


@pytest_asyncio.fixture
async def secure_gateway(
    secure_installation: Installation, home_assistant: HomeAssistant
) -> AsyncIterator[Gateway]:
    config = BridgeConfig(
        url=home_assistant.url,
        token=Secret(home_assistant.token, "ha token"),
        ping_interval=1.0,
        ping_timeout=2.0,
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    async with running_secure_gateway(secure_installation, config, backoff=(0.2,) * 4) as gw:
        yield gw


async def state(client: HaClient, entity: str) -> str:
    reply = await client.command("get_states")
    return str(next(s["state"] for s in reply["result"] if s["entity_id"] == entity))


async def set_boolean(client: HaClient, entity: str, on: bool) -> None:
    reply = await client.command(
        "call_service",
        domain="input_boolean",
        service="turn_on" if on else "turn_off",
        target={"entity_id": entity},
    )
    assert reply["success"], reply


async def calls_of(
    client: HaClient, subscription: int, service: str, entity: str = "input_boolean.d"
) -> int:
    """``call_service`` events HA fired for ``<domain>.<service>`` on ``entity`` so far."""
    assert (await client.command("ping"))["type"] == "pong"  # everything before it arrived
    return sum(
        1
        for m in client.inbox
        if m.get("type") == "event"
        and m.get("id") == subscription
        and m["event"]["data"].get("service") == service
        and m["event"]["data"].get("service_data", {}).get("entity_id") == [entity]
    )


@dataclass
class EngineRig:
    """An engine process (not started yet) on the rules directory ``rules``, and the
    operator's view of the installation to watch it: JetStream and the status bucket."""

    rules: Path
    operator: Client
    js: JetStreamContext
    status: KeyValue
    engine: ServiceProcess


async def engine_rig(installation: Installation, tmp_path: Path) -> EngineRig:
    """An empty rules directory under ``tmp_path`` and an engine process that will read it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    operator = await installation.connect("operator")
    js = operator.jetstream()
    status = await js.key_value(installation.topology.bucket(STATUS).bucket)
    env = {**os.environ, **installation.environ(), "RUBY_RULES_DIR": str(rules)}
    return EngineRig(rules, operator, js, status, engine_process(env, tmp_path / "engine.log"))


async def test_rules_drive_real_home_assistant_once_through_crashes_and_bad_files(
    secure_installation: Installation,
    secure_gateway: Gateway,
    ha_ws: HaClient,
    tmp_path: Path,
) -> None:
    installation = secure_installation
    rig = await engine_rig(installation, tmp_path)
    rules, operator, js, status, engine = rig.rules, rig.operator, rig.js, rig.status, rig.engine
    (rules / "booleans.yaml").write_text(RULES)
    timers = await js.key_value(installation.topology.bucket(TIMERS).bucket)
    stream = installation.topology.stream(EVENTS).name

    started = datetime.now(UTC)

    def ready() -> Awaitable[bool]:
        return engine_ready(status, started)

    def settled() -> Awaitable[bool]:
        return consumers_idle(js, installation.topology, ENGINE, GATEWAY)

    try:
        await engine.start()
        await eventually(ready, within=60, message="engine ready")
        # A known start: the booleans set, and everything the engine had to handle handled
        # (the gateway's reconciliation published HA's states before the engine started).
        for entity in ("input_boolean.c", "input_boolean.d", "input_boolean.e"):
            await set_boolean(ha_ws, entity, False)
        await set_boolean(ha_ws, "input_boolean.e", True)
        await eventually(lambda: _is(ha_ws, "input_boolean.e", "on"), message="e on")
        await eventually(settled, message="engine and gateway idle")
        await set_boolean(ha_ws, "input_boolean.d", False)  # whatever the backlog did to it
        await eventually(lambda: _is(ha_ws, "input_boolean.d", "off"), message="d off")
        await eventually(settled, message="engine and gateway idle")
        subscription = await ha_ws.subscribe("call_service")
        ha_ws.inbox.clear()

        # 1. A state change becomes the right service call.
        await set_boolean(ha_ws, "input_boolean.c", True)
        await eventually(lambda: _is(ha_ws, "input_boolean.d", "on"), message="d turned on")
        assert await calls_of(ha_ws, subscription, "turn_on") == 1

        # 2. The same trigger redelivered (stored again under new message ids): no second call.
        subject = installation.subjects.ha_state("input_boolean.c")
        stored = await js.get_last_msg(stream, subject)
        for copy in range(2):
            await js.publish(subject, stored.data or b"", headers={"Nats-Msg-Id": f"re-{copy}"})
        await eventually(settled, message="engine and gateway handled the copies")
        assert await calls_of(ha_ws, subscription, "turn_on") == 1

        # 3. A `for` timer survives kill -9 of the engine and fires once after the restart.
        await set_boolean(ha_ws, "input_boolean.e", False)
        await eventually(lambda: _stored(timers), message="the for timer is stored")
        await engine.kill9()
        started = datetime.now(UTC)
        await asyncio.sleep(4)
        assert await state(ha_ws, "input_boolean.d") == "on"
        await engine.start()
        await eventually(ready, within=60, message="engine ready again")
        await eventually(lambda: _is(ha_ws, "input_boolean.d", "off"), message="d turned off")
        await eventually(lambda: _gone(timers), message="the for timer is deleted")
        await eventually(settled, message="engine and gateway idle")
        assert await calls_of(ha_ws, subscription, "turn_off") == 1

        # 4. A broken rule file does not stop the others.
        (rules / "broken.yaml").write_text("rules:\n  - id: broken\n    triggers: nope\n")
        await eventually(lambda: _refused(status, "broken.yaml"), message="refusal visible")
        await set_boolean(ha_ws, "input_boolean.c", False)
        await set_boolean(ha_ws, "input_boolean.c", True)
        await eventually(lambda: _is(ha_ws, "input_boolean.d", "on"), message="d on again")
        assert await calls_of(ha_ws, subscription, "turn_on") == 2
    finally:
        code = await engine.stop()
        await operator.drain()
    assert code == 0, engine.log.read_text()
    assert installation.seed("engine").reveal() not in engine.log.read_text()
    assert "rule file refused" in engine.events()


TEMPLATE_RULE = """
- id: level_above_half
  alias: The level above half for 2 s sets the lamp's brightness to it (a template trigger)
  triggers:
    - trigger: template
      value_template: "{{ states('input_number.level') | float(0) > 50 }}"
      for: "00:00:02"
  actions:
    - action: input_number.set_value
      target:
        entity_id: input_number.lamp_brightness
      data:
        value: "{{ trigger.to_state.state | float }}"
"""
LEVEL, BRIGHTNESS = "input_number.level", "input_number.lamp_brightness"


async def set_number(client: HaClient, entity: str, value: float) -> None:
    reply = await client.command(
        "call_service",
        domain="input_number",
        service="set_value",
        target={"entity_id": entity},
        service_data={"value": value},
    )
    assert reply["success"], reply
    await eventually(lambda: _is(client, entity, str(float(value))), message=f"{entity} set")


async def test_a_template_trigger_fires_on_home_assistants_states_once_per_edge(
    secure_installation: Installation,
    secure_gateway: Gateway,
    ha_ws: HaClient,
    tmp_path: Path,
) -> None:
    installation = secure_installation
    rig = await engine_rig(installation, tmp_path)
    operator, js, status, engine = rig.operator, rig.js, rig.status, rig.engine
    (rig.rules / "automations.yaml").write_text(TEMPLATE_RULE)
    started = datetime.now(UTC)

    def settled() -> Awaitable[bool]:
        return consumers_idle(js, installation.topology, ENGINE, GATEWAY)

    try:
        await engine.start()
        await eventually(lambda: engine_ready(status, started), within=60, message="engine ready")
        await set_number(ha_ws, LEVEL, 10)
        await set_number(ha_ws, BRIGHTNESS, 0)
        await eventually(settled, message="engine and gateway idle")
        subscription = await ha_ws.subscribe("call_service")
        ha_ws.inbox.clear()

        # 1. The template turns true and holds 2 s (a durable `for`, one hold for the whole
        #    template): the rule sets the brightness from trigger.to_state.
        await set_number(ha_ws, LEVEL, 60)
        await eventually(lambda: _is(ha_ws, BRIGHTNESS, "60.0"), message="brightness 60")
        # 2. Still true: no second call.
        await set_number(ha_ws, LEVEL, 70)
        await eventually(settled, message="engine and gateway idle")
        assert await state(ha_ws, BRIGHTNESS) == "60.0"
        assert await calls_of(ha_ws, subscription, "set_value", BRIGHTNESS) == 1
        # 3. False, then true again: it fires again, with the change that made it true.
        await set_number(ha_ws, LEVEL, 20)
        await set_number(ha_ws, LEVEL, 80)
        await eventually(lambda: _is(ha_ws, BRIGHTNESS, "80.0"), message="brightness 80")
        await eventually(settled, message="engine and gateway idle")
        assert await calls_of(ha_ws, subscription, "set_value", BRIGHTNESS) == 2
    finally:
        code = await engine.stop()
        await operator.drain()
    assert code == 0, engine.log.read_text()


async def _is(client: HaClient, entity: str, value: str) -> bool:
    return await state(client, entity) == value


async def _refused(status: Any, file: str) -> bool:
    try:
        entry = await status.get("engine.rules")
    except KeyNotFoundError:
        return False
    return file in read_record(RulesRecord, entry.value or b"", key="engine.rules").refused_files


async def _gone(timers: Any) -> bool:
    try:
        await timers.get(TIMER_KEY)
    except KeyNotFoundError:
        return True
    return False


async def _stored(timers: Any) -> bool:
    try:
        return (await timers.get(TIMER_KEY)).value is not None
    except KeyNotFoundError:
        return False


SUN_RULE = """
- id: d_on_at_sunset
  alias: d on at sunset, the offset bringing it to a few seconds from now
  triggers:
    - trigger: sun
      event: sunset
      offset: "{offset}"
  actions:
    - action: input_boolean.turn_on
      target:
        entity_id: input_boolean.d
"""


async def test_a_sun_trigger_in_has_syntax_fires_against_real_home_assistant(
    secure_installation: Installation,
    secure_gateway: Gateway,
    ha_ws: HaClient,
    home_assistant: HomeAssistant,
    tmp_path: Path,
) -> None:
    installation = secure_installation
    rig = await engine_rig(installation, tmp_path)
    rules, operator, js, status, engine = rig.rules, rig.operator, rig.js, rig.status, rig.engine
    entry = await _sun_integration(home_assistant)  # HA's own sunset, to compare with ours
    try:
        # 1. Our sunset at HA's home (zone.home) is HA's own (sun.sun), within a minute.
        found: dict[str, Any] = {}

        async def sun_and_home() -> bool:
            reply = await ha_ws.command("get_states")
            found.update({s["entity_id"]: s for s in reply["result"]})
            return "sun.sun" in found and "zone.home" in found

        await eventually(sun_and_home, message="sun.sun and zone.home in HA's states")
        home = found["zone.home"]["attributes"]
        place = Place(home["latitude"], home["longitude"])
        theirs = datetime.fromisoformat(found["sun.sun"]["attributes"]["next_setting"])
        ours = next_sun_event(place, "sunset", theirs - timedelta(minutes=2))
        assert ours is not None
        assert abs(ours - theirs) <= timedelta(minutes=1), (ours, theirs)

        # 2. The engine, knowing the home from the gateway's projection, arms a sun trigger
        # written in HA's syntax and fires it at sunset + offset: a few seconds from now.
        started = datetime.now(UTC)
        await engine.start()
        await eventually(lambda: engine_ready(status, started), within=60, message="ready")
        await set_boolean(ha_ws, "input_boolean.d", False)
        await eventually(lambda: _is(ha_ws, "input_boolean.d", "off"), message="d off")
        await eventually(
            lambda: consumers_idle(js, installation.topology, ENGINE, GATEWAY), message="idle"
        )
        await eventually(sun_and_home, message="HA's states again")
        subscription = await ha_ws.subscribe("call_service")
        ha_ws.inbox.clear()
        now = datetime.now(UTC)
        theirs = datetime.fromisoformat(found["sun.sun"]["attributes"]["next_setting"])
        # The engine moves its sunset onto HA's (sun.sun's, here 20 s or so from ours).
        seconds = math.ceil((now + timedelta(seconds=20) - theirs).total_seconds())
        instant = theirs + timedelta(seconds=seconds)
        sign, magnitude = ("-" if seconds < 0 else "+"), abs(seconds)
        hours, rest = divmod(magnitude, 3600)
        offset = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
        (rules / "sun.yaml").write_text(SUN_RULE.format(offset=offset))

        await eventually(
            lambda: _is(ha_ws, "input_boolean.d", "on"), within=60, message="d on at sunset"
        )
        assert await calls_of(ha_ws, subscription, "turn_on") == 1
        [fired] = [
            datetime.fromisoformat(m["event"]["time_fired"])
            for m in ha_ws.inbox
            if m.get("type") == "event"
            and m.get("id") == subscription
            and m["event"]["data"].get("service_data", {}).get("entity_id") == ["input_boolean.d"]
        ]
        assert instant <= fired < instant + timedelta(seconds=30), (offset, instant, fired)
        # Its durable timer is re-armed for tomorrow's sunset + offset.
        timers = await js.key_value(installation.topology.bucket(TIMERS).bucket)
        record = read_timer((await timers.get("at.d_on_at_sunset.0")).value or b"")
        sun = EntityState(
            state="", attributes={"next_setting": theirs.isoformat()}, last_changed=now,
            last_updated=now,
        )  # fmt: skip
        shift = timedelta(seconds=seconds) + correction(place, "sunset", {"sun.sun": sun})
        assert record.deadline == next_sun_event(place, "sunset", instant, shift)
    finally:
        code = await engine.stop()
        await operator.drain()
        await _remove_entry(home_assistant, entry)
    assert code == 0, engine.log.read_text()


async def _sun_integration(ha: HomeAssistant) -> str:
    """Load HA's ``sun`` integration (offline) through its config flow; its entry's id."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ha.token}"}) as http:
        base = f"http://127.0.0.1:{ha.port}/api/config/config_entries/flow"
        async with http.post(base, json={"handler": "sun"}) as reply:
            flow = await reply.json()
        if flow.get("type") == "abort":  # already loaded (a previous run left it)
            return ""
        async with http.post(f"{base}/{flow['flow_id']}", json={}) as reply:
            created = await reply.json()
        assert created["type"] == "create_entry", created
        return str(created["result"]["entry_id"])


async def _remove_entry(ha: HomeAssistant, entry_id: str) -> None:
    """Leave HA as the other tests expect it: without the integration this test loaded."""
    if not entry_id:
        return
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ha.token}"}) as http,
        http.delete(
            f"http://127.0.0.1:{ha.port}/api/config/config_entries/entry/{entry_id}"
        ) as reply,
    ):
        assert reply.status == 200, reply.status
