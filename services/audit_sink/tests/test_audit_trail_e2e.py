"""End to end through the running stack: an automation fires, and the audit store holds the
rule firing, the command executed and the links `rubyctl audit why` follows back to the state
change that started it. The engine and the sink run as processes under their own identities;
the gateway in-process (as its identity), on the simulated home."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest_asyncio

from ruby_audit_sink.testing import sink_process, sink_ready
from ruby_auditstore import AuditStore
from ruby_ctl.testing import Installation
from ruby_engine.testing import engine_process, engine_ready
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import STATUS
from ruby_runtime.secret import Secret

RULES = """
rules:
  - id: hallway_light_on
    description: light on with motion when dark
    triggers:
      - {kind: state, entity_id: binary_sensor.hallway_motion, to: "on"}
    conditions:
      - {kind: numeric_state, entity_id: sensor.outdoor_illuminance, below: 50}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.hallway}}
"""


@pytest_asyncio.fixture
async def gateway(secure_installation: Installation, hasim: Simulator) -> AsyncIterator[Gateway]:
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"))
    async with running_secure_gateway(secure_installation, config, backoff=(0.1,) * 4) as gw:
        yield gw


def rubyctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruby_ctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_firing_is_stored_and_why_leads_back_to_the_motion(
    secure_installation: Installation, gateway: Gateway, hasim: Simulator, tmp_path: Path
) -> None:
    installation = secure_installation
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "hallway.yaml").write_text(RULES)
    db = tmp_path / "audit.db"
    env = {
        **os.environ,
        **installation.environ(),
        "RUBY_RULES_DIR": str(rules),
        "RUBY_AUDIT_DB": str(db),
    }
    operator = await installation.connect("operator")
    status = await operator.jetstream().key_value(installation.topology.bucket(STATUS).bucket)
    sink = sink_process(env, tmp_path / "sink.log")
    engine = engine_process(env, tmp_path / "engine.log")
    since = datetime.now(UTC)
    try:
        await sink.start()
        await engine.start()
        await eventually(lambda: sink_ready(status, since), within=60, message="sink ready")
        await eventually(lambda: engine_ready(status, since), within=60, message="engine ready")
        hasim.set_state("sensor.outdoor_illuminance", "10")
        hasim.set_state("light.hallway", "off")
        hasim.set_state("binary_sensor.hallway_motion", "on")
        await eventually(lambda: hasim.states["light.hallway"].state == "on", message="light on")

        def stored(action: str) -> list[object]:
            if not db.exists():
                return []
            with AuditStore(db, readonly=True) as store:
                return [s.record for s in store.query(action=action)]

        await eventually(lambda: bool(stored("command.executed")), message="command stored")
        await eventually(lambda: bool(stored("rule.fired")), message="firing stored")
        [fired] = stored("rule.fired")
        [executed] = stored("command.executed")
        assert fired.target == "rule:hallway_light_on"  # type: ignore[attr-defined]
        command_id = executed.details["command_id"]  # type: ignore[attr-defined]
        assert fired.details["command_ids"] == [command_id]  # type: ignore[attr-defined]
        assert fired.details["trigger_event_id"].startswith(  # type: ignore[attr-defined]
            "ha.binary_sensor.hallway_motion."
        )
        assert stored("secret.read"), "the services' start-up secret reads are in the store"

        why = await asyncio.to_thread(
            rubyctl, env, "audit", "why", "light.hallway", "--db", str(db)
        )
        assert why.returncode == 0, why.stdout + why.stderr
        lines = why.stdout.splitlines()
        assert lines[0].startswith("light.hallway is on")
        assert f"<- command {command_id} light.turn_on executed" in lines[1]
        assert "<- rule hallway_light_on" in lines[2]
        assert "<- binary_sensor.hallway_motion changed off -> on" in lines[3]

        verify = await asyncio.to_thread(rubyctl, env, "audit", "verify", "--db", str(db))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert verify.stdout.startswith("ok: ")
    finally:
        codes = (await engine.stop(), await sink.stop())
        await operator.drain()
    assert codes == (0, 0), (tmp_path / "engine.log").read_text() + sink.log.read_text()
