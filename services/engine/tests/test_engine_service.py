"""The engine as a process (``ruby-engine``, its own NKEY identity over TLS): a ``for`` timer,
and a run paused inside a ``repeat``, survive ``kill -9`` and finish once after the restart;
the service stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest_asyncio
from nats.js.errors import KeyNotFoundError

from ruby_ctl.testing import Installation
from ruby_engine.testing import engine_process, engine_ready
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.kvread import read_bucket
from ruby_natsx.testing import ServiceProcess, consumers_idle, eventually
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
    engine = _engine_with(installation, tmp_path, RULES)
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
    _stopped_cleanly_after_one_restart(installation, engine, code)


BLINK = """
rules:
  - id: blink
    description: three switches on, five seconds apart, then the first off
    triggers:
      - {kind: state, entity_id: input_boolean.blink, to: "on"}
    actions:
      - kind: repeat
        count: 3
        actions:
          - kind: call
            service: switch.turn_on
            target: {entity_id: "switch.s{{ repeat.index }}"}
          - {kind: delay, duration: 5s}
      - {kind: call, service: switch.turn_off, target: {entity_id: switch.s1}}
"""


async def test_a_run_paused_inside_a_repeat_survives_kill_9_and_finishes_once(
    secure_installation: Installation, gateway: Gateway, hasim: Simulator, tmp_path: Path
) -> None:
    installation = secure_installation
    engine = _engine_with(installation, tmp_path, BLINK)
    operator = await installation.connect("operator")
    js = operator.jetstream()
    bucket = installation.topology.bucket(TIMERS).bucket
    status = await js.key_value(installation.topology.bucket(STATUS).bucket)
    started = datetime.now(UTC)

    def ready() -> Awaitable[bool]:
        return engine_ready(status, started)

    def paused_in(iteration: int | None) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:  # None: no run record left
            records = await read_bucket(operator, bucket)
            runs = [json.loads(raw) for key, raw in records.items() if key.startswith("run.")]
            if iteration is None:
                return not runs
            return any(run["resume_after"][:2] == [0, iteration - 1] for run in runs)

        return check

    def turned_on(number: int) -> int:
        return hasim.calls[("switch", "turn_on", f"switch.s{number}")]

    try:
        for number in (1, 2, 3):
            hasim.set_state(f"switch.s{number}", "off")
        hasim.set_state("input_boolean.blink", "off")
        await engine.start()
        await eventually(ready, within=60, message="engine ready")
        hasim.set_state("input_boolean.blink", "on")
        await eventually(paused_in(2), within=30, message="paused in the second iteration")

        await engine.kill9()  # the engine dies with the run in iteration 2's delay
        assert (turned_on(1), turned_on(3)) == (1, 0)
        started = datetime.now(UTC)
        await engine.start()
        await eventually(ready, within=60, message="engine ready again")
        await eventually(paused_in(None), within=60, message="the run finished")
        await eventually(
            lambda: hasim.states["switch.s1"].state == "off", within=20, message="s1 off"
        )
        await eventually(
            lambda: consumers_idle(js, installation.topology, ENGINE, GATEWAY),
            message="nothing more in flight",
        )
        assert [turned_on(number) for number in (1, 2, 3)] == [1, 1, 1]
        assert hasim.calls[("switch", "turn_off", "switch.s1")] == 1
        assert [hasim.states[f"switch.s{n}"].state for n in (1, 2, 3)] == ["off", "on", "on"]
    finally:
        code = await engine.stop()
        await operator.drain()
    _stopped_cleanly_after_one_restart(installation, engine, code)


def _engine_with(installation: Installation, tmp_path: Path, rules: str) -> ServiceProcess:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "rules.yaml").write_text(rules)
    env = {**os.environ, **installation.environ(), "RUBY_RULES_DIR": str(directory)}
    return engine_process(env, tmp_path / "engine.log")


def _stopped_cleanly_after_one_restart(
    installation: Installation, engine: ServiceProcess, code: int
) -> None:
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
