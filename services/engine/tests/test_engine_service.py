"""The engine as a process (``ruby-engine``, its own NKEY identity over TLS): a ``for`` timer
survives ``kill -9`` and fires once after the restart; the service stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path

import pytest_asyncio
from nats.js.errors import KeyNotFoundError

from ruby_ctl.testing import Installation
from ruby_engine.testing import engine_process, engine_ready
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import ENGINE, GATEWAY, STATUS, TIMERS
from ruby_runtime.secret import Secret

RULES = """
rules:
  - id: hallway_light_off
    description: light off after 3 quiet seconds
    triggers:
      - {kind: state, entity_id: binary_sensor.hallway_motion, to: "off", for: 3s}
    actions:
      - {kind: call, service: light.turn_off, target: {entity_id: light.hallway}}
"""
TIMER_KEY = "for.hallway_light_off.0.binary_sensor.hallway_motion"


@pytest_asyncio.fixture
async def gateway(secure_installation: Installation, hasim: Simulator) -> AsyncIterator[Gateway]:
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"))
    async with running_secure_gateway(secure_installation, config, backoff=(0.1,) * 4) as gw:
        yield gw


async def test_a_for_timer_survives_kill_9_and_fires_once_after_restart(
    secure_installation: Installation, gateway: Gateway, hasim: Simulator, tmp_path: Path
) -> None:
    installation = secure_installation
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "hallway.yaml").write_text(RULES)
    operator = await installation.connect("operator")
    js = operator.jetstream()
    timers = await js.key_value(installation.topology.bucket(TIMERS).bucket)
    status = await js.key_value(installation.topology.bucket(STATUS).bucket)

    started = datetime.now(UTC)

    def ready() -> Awaitable[bool]:
        return engine_ready(status, started)

    async def timer_stored() -> bool:
        try:
            return (await timers.get(TIMER_KEY)).value is not None
        except KeyNotFoundError:
            return False

    env = {**os.environ, **installation.environ(), "RUBY_RULES_DIR": str(rules)}
    engine = engine_process(env, tmp_path / "engine.log")
    try:
        await engine.start()
        await eventually(ready, within=60, message="engine ready")
        hasim.set_state("light.hallway", "on")
        hasim.set_state("binary_sensor.hallway_motion", "on")
        hasim.set_state("binary_sensor.hallway_motion", "off")
        await eventually(timer_stored, within=20, message="the for timer is stored")

        await engine.kill9()  # the engine dies with the timer pending
        started = datetime.now(UTC)
        await asyncio.sleep(4)  # the deadline passes while no engine runs
        assert hasim.calls[("light", "turn_off", "light.hallway")] == 0
        assert hasim.states["light.hallway"].state == "on"

        await engine.start()
        await eventually(ready, within=60, message="engine ready again")
        await eventually(
            lambda: hasim.states["light.hallway"].state == "off", within=20, message="light off"
        )
        await eventually(lambda: _gone(timers), within=10, message="timer deleted")
        await eventually(
            lambda: consumers_idle(js, installation.topology, ENGINE, GATEWAY),
            message="nothing more in flight",
        )
        assert hasim.calls[("light", "turn_off", "light.hallway")] == 1
    finally:
        code = await engine.stop()
        await operator.drain()
    output = engine.log.read_text()
    assert code == 0, output
    assert installation.seed("engine").reveal() not in output
    events = engine.events()
    assert events.count("engine running") == 2
    assert "engine stopped" in events[len(events) - events[::-1].index("engine running") :]


async def _gone(timers: object) -> bool:
    try:
        await timers.get(TIMER_KEY)  # type: ignore[attr-defined]
    except KeyNotFoundError:
        return True
    return False
