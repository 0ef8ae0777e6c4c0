"""Per-entity turns and the newest executed command per entity (no broker needed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ruby_gateway.ordering import TargetOrder

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_turns_on_one_entity_are_taken_in_arrival_order() -> None:
    order = TargetOrder()
    ran: list[int] = []

    async def job(n: int) -> None:
        async with order.turn(["light.a"], T0):
            await asyncio.sleep(0)  # let the others queue up behind
            ran.append(n)

    await asyncio.gather(*(job(n) for n in range(20)))
    assert ran == list(range(20))
    assert not order._locks  # nothing is kept once nobody waits


async def test_a_cancelled_waiter_releases_nothing_it_does_not_hold() -> None:
    order = TargetOrder()
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def holder() -> None:
        async with order.turn(["light.a"], T0):
            inside.set()
            await leave.wait()

    first = asyncio.create_task(holder())
    await inside.wait()
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert order._locks["light.a"].locked()  # still the first holder's
    leave.set()
    await first
    async with asyncio.timeout(1), order.turn(["light.a"], T0):
        pass


def test_only_a_newer_command_on_every_target_supersedes() -> None:
    order = TargetOrder()
    order.executed(["light.a"], "new", T0)
    assert order.superseded(["light.a"], T0 - timedelta(seconds=1)) is not None
    assert order.superseded(["light.a"], T0) is None  # not older: not stale
    assert order.superseded(["light.a", "light.b"], T0 - timedelta(seconds=1)) is None
    assert order.superseded([], T0 - timedelta(seconds=1)) is None
    order.executed(["light.a"], "older", T0 - timedelta(minutes=1))  # a late one does not win
    newest = order.superseded(["light.a"], T0 - timedelta(seconds=1))
    assert newest is not None
    assert newest.command_id == "new"


async def test_a_newer_command_waiting_for_every_target_is_known() -> None:
    order = TargetOrder()
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def hold(entities: list[str], created: datetime) -> None:
        async with order.turn(entities, created):
            inside.set()
            await leave.wait()

    first = asyncio.create_task(hold(["light.a"], T0))
    await inside.wait()
    later = T0 + timedelta(seconds=1)
    second = asyncio.create_task(hold(["light.a", "light.b"], later))
    await asyncio.sleep(0)  # one step: it registers, then waits for light.a's turn
    assert order.waiting_newer(["light.a"], T0) == later
    assert order.waiting_newer(["light.a", "light.b"], T0) == later
    assert order.waiting_newer(["light.a"], later) is None  # not newer than itself
    assert order.waiting_newer(["light.a", "light.c"], T0) is None  # not on every target
    assert order.waiting_newer([], T0) is None
    leave.set()
    await asyncio.gather(first, second)
    assert order.waiting_newer(["light.a"], T0 - timedelta(seconds=1)) is None  # all done


def test_a_state_change_later_than_a_given_one_is_known() -> None:
    order = TargetOrder()
    order.saw_change("input_boolean.c", T0)
    order.saw_change("input_boolean.c", T0 - timedelta(seconds=5))  # out of order: ignored
    assert order.changed_since("input_boolean.c", T0 - timedelta(seconds=1)) == T0
    assert order.changed_since("input_boolean.c", T0) is None
    assert order.changed_since("input_boolean.x", T0) is None
