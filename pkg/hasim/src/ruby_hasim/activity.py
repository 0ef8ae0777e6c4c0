"""A scripted evening for the demo home: dusk outside, someone passing the hallway now and then.

`rubyctl up` runs the demo home with it, so the hallway automation (``rules/hallway.yaml``) can
be watched working: the light turns on with each pass and off five minutes after the last one.
"""

from __future__ import annotations

import asyncio

from ruby_hasim.server import Simulator

MOTION = "binary_sensor.hallway_motion"
ILLUMINANCE = "sensor.outdoor_illuminance"
DUSK_LUX = "20"
"""Outdoor light at dusk: below the hallway rule's 50 lx."""


async def evening(
    sim: Simulator, *, period: float, motion_for: float = 5.0, first: float = 0.0
) -> None:
    """Set dusk, wait ``first`` seconds (for the stack to come up), then every ``period``
    seconds report motion for ``motion_for`` seconds.

    Runs until cancelled. Entities the home lacks are added, as a device would add them.
    """
    if period <= motion_for:
        raise ValueError(f"period ({period}s) must be longer than motion_for ({motion_for}s)")
    sim.set_state(ILLUMINANCE, DUSK_LUX)
    await asyncio.sleep(first)
    while True:
        sim.set_state(MOTION, "on")
        await asyncio.sleep(motion_for)
        sim.set_state(MOTION, "off")
        await asyncio.sleep(period - motion_for)
