"""Helpers shared by the gateway's command tests."""

from __future__ import annotations

import pytest

from ruby_gateway.testing import ChangedTwice, Gateway
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_schemas.commands import TriggerChange

SOURCE = "input_boolean.guest_mode"


@pytest.fixture
def changed_twice(hasim: Simulator) -> ChangedTwice:
    """Turn guest mode on, then off, in the simulator, and wait until the gateway has seen the
    second change. Returns both as a run's trigger (``late_trigger``): the first one is a change
    Home Assistant has superseded since, the second its latest."""

    async def twice(gateway: Gateway) -> tuple[TriggerChange, TriggerChange]:
        turned_on = hasim.set_state(SOURCE, "on")
        turned_off = hasim.set_state(SOURCE, "off")
        await eventually(
            lambda: (
                (known := gateway.bridge.projection.get(SOURCE)) is not None
                and known.last_changed == turned_off.last_changed
            ),
            message="the gateway saw guest mode turn off",
        )
        return (
            TriggerChange(entity_id=SOURCE, last_changed=turned_on.last_changed),
            TriggerChange(entity_id=SOURCE, last_changed=turned_off.last_changed),
        )

    return twice
