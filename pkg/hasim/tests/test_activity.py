"""The demo home's scripted evening: dusk, then hallway motion on and off, period after period."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from ruby_hasim.activity import ILLUMINANCE, MOTION, evening
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient


async def test_the_evening_sets_dusk_and_pulses_hallway_motion(
    hasim: Simulator, ha_client: HaClient
) -> None:
    await ha_client.subscribe("state_changed")
    script = asyncio.create_task(evening(hasim, period=0.3, motion_for=0.1))
    changes: list[tuple[str, str]] = []
    motion: list[str] = []
    while len(motion) < 5:  # three periods begin: on, off, on, off, on (however late)
        event = await ha_client.next_event(timeout=10)
        data = event["event"]["data"]
        changes.append((data["entity_id"], data["new_state"]["state"]))
        if data["entity_id"] == MOTION:
            motion.append(data["new_state"]["state"])
    script.cancel()
    with pytest.raises(asyncio.CancelledError):
        await script
    assert changes[0] == (ILLUMINANCE, "20")
    assert motion == ["on", "off", "on", "off", "on"]


async def test_the_period_must_outlast_the_motion(hasim: Simulator) -> None:
    with pytest.raises(ValueError, match="must be longer"):
        await evening(hasim, period=1, motion_for=5)


def test_the_cli_refuses_a_too_short_activity_period() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruby_hasim.main", "--port", "0", "--activity", "3"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--activity must be more than 5 seconds" in done.stderr
