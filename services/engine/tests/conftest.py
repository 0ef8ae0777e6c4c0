"""Shared fixtures: the simulator, the gateway and the engine in-process on a test server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client

from ruby_engine.engine import Engine
from ruby_engine.testing import running_engine
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.topology import Topology
from ruby_runtime.secret import Secret

HALLWAY = """
rules:
  - id: hallway_light_on
    description: light on with motion when dark
    triggers:
      - {kind: state, entity_id: binary_sensor.hallway_motion, to: "on"}
    conditions:
      - {kind: numeric_state, entity_id: sensor.outdoor_illuminance, below: 50}
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: light.hallway}
        data: {brightness_pct: 60}
  - id: hallway_light_off
    description: light off after quiet
    triggers:
      - {kind: state, entity_id: binary_sensor.hallway_motion, to: "off", for: 1s}
    actions:
      - {kind: call, service: light.turn_off, target: {entity_id: light.hallway}}
"""

FAN = """
rules:
  - id: fan_on_with_guests
    description: fan on when guests arrive
    triggers:
      - {kind: state, entity_id: input_boolean.guest_mode, to: "on"}
    actions:
      - {kind: call, service: switch.turn_on, target: {entity_id: switch.fan}}
"""


@pytest_asyncio.fixture
async def gateway(
    nc: Client, topology_applied: Topology, hasim: Simulator
) -> AsyncIterator[Gateway]:
    config = BridgeConfig(
        url=hasim.url,
        token=Secret(hasim.token, "ha token"),
        ping_interval=0.5,
        ping_timeout=0.5,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    async with running_gateway(
        nc, topology_applied.subjects, config, owner="gateway-test", backoff=(0.1,) * 4
    ) as gateway:
        yield gateway


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "hallway.yaml").write_text(HALLWAY)
    (directory / "fan.yaml").write_text(FAN)
    return directory


@pytest_asyncio.fixture
async def engine(
    nc: Client, topology_applied: Topology, rules_dir: Path, gateway: Gateway
) -> AsyncIterator[Engine]:
    async with running_engine(nc, topology_applied.subjects, rules_dir) as engine:
        yield engine


@pytest.fixture
def fan_text() -> str:
    """The text of ``fan.yaml`` in ``rules_dir``, for tests that rewrite it."""
    return FAN
