"""Middleware is a function of handlers: chained in one place, each tested with no broker."""

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Delivery, Handler, Outbound, chain, timeout
from ruby_natsx.testing import state_changed
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope

DELIVERY = Delivery("s", "S", "c", 1, 1, {}, datetime.now(UTC))


def recording(name: str, log: list[str]) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
            log.append(f"{name}>")
            out = await handler(envelope, delivery)
            log.append(f"<{name}")
            return out

        return wrapped

    return wrap


async def test_the_first_middleware_listed_runs_outermost() -> None:
    log: list[str] = []

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        log.append("handler")
        return []

    wrapped = chain(handler, recording("a", log), recording("b", log))
    assert await wrapped(state_changed("light.x", "on"), DELIVERY) == []
    assert log == ["a>", "b>", "handler", "<b", "<a"]


async def test_timeout_turns_a_hung_handler_into_a_transient_error() -> None:
    async def hangs(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        await asyncio.Event().wait()
        return []

    with pytest.raises(TransientError, match=r"longer than 0\.05s"):
        await timeout(0.05)(hangs)(state_changed("light.x", "on"), DELIVERY)


async def test_timeout_passes_results_through() -> None:
    async def quick(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        return [Outbound("ruby.evt.x", envelope)]

    env = state_changed("light.x", "on")
    assert await timeout(1)(quick)(env, DELIVERY) == [Outbound("ruby.evt.x", env)]
