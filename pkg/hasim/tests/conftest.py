"""Every test talks to a real simulator through `StrictClient`, which checks each message."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from ruby_hasim import const
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient
from ruby_schemas.ha import HaContext, HaEvent, HaState, HaStateChangedEvent, strict_ha

KEYS = {
    "auth_required": {"type", "ha_version"},
    "auth_ok": {"type", "ha_version"},
    "auth_invalid": {"type", "message"},
    "pong": {"id", "type"},
    "event": {"id", "type", "event"},
}
ERROR_KEYS = {"code", "message"}
TRANSLATION_KEYS = {"translation_key", "translation_placeholders", "translation_domain"}


def check_message(message: dict[str, Any]) -> None:
    """Fail unless `message` has exactly Home Assistant's shape; models validate strictly."""
    kind = message["type"]
    if kind == "result":
        if message["success"]:
            assert set(message) == {"id", "type", "success", "result"}, message
        else:
            assert set(message) == {"id", "type", "success", "error"}, message
            error = message["error"]
            assert set(error) in (ERROR_KEYS, ERROR_KEYS | TRANSLATION_KEYS), error
            assert error["code"] in const.ERROR_CODES
        return
    assert set(message) == KEYS[kind], message
    if kind == "event":
        with strict_ha():
            event = HaEvent.model_validate(message["event"])
            if event.event_type == "state_changed":
                HaStateChangedEvent.model_validate(message["event"])


def _check_states(states: list[dict[str, Any]]) -> list[HaState]:
    """Validate state objects strictly; return them as models."""
    with strict_ha():
        return [HaState.model_validate(state) for state in states]


def _check_context(context: dict[str, Any]) -> HaContext:
    """Validate a context strictly: all three keys, a 26-character ULID id."""
    assert set(context) == {"id", "parent_id", "user_id"}
    with strict_ha():
        model = HaContext.model_validate(context)
    assert len(model.id) == 26
    assert model.id.isalnum()
    assert model.id.isupper()
    return model


class StrictClient(HaClient):
    """An `HaClient` that checks every message it receives against Home Assistant's shapes."""

    checked = 0

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        message = await super().receive(timeout)
        check_message(message)
        StrictClient.checked += 1
        return message


Connect = Callable[..., Awaitable[HaClient]]


@pytest_asyncio.fixture
async def connect(hasim: Simulator) -> AsyncIterator[Connect]:
    """`await connect(token=..., sim=...)`: a checked client, closed after the test."""
    clients: list[StrictClient] = []

    async def open_client(token: str | None = hasim.token, sim: Simulator = hasim) -> StrictClient:
        client = await StrictClient.connect(sim.url, token)
        assert isinstance(client, StrictClient)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest_asyncio.fixture
async def client(connect: Connect) -> StrictClient:
    """An authenticated, checked client of `hasim`."""
    result = await connect()
    assert isinstance(result, StrictClient)
    return result


@pytest.fixture
def check_states() -> Callable[[list[dict[str, Any]]], list[HaState]]:
    """Validate state objects strictly against `HaState`."""
    return _check_states


@pytest.fixture
def check_context() -> Callable[[dict[str, Any]], HaContext]:
    """Validate a context strictly against `HaContext`; its id must be a ULID."""
    return _check_context


@pytest.fixture
def sim(hasim: Simulator) -> Simulator:
    """The running default-home simulator (a shorter name)."""
    return hasim
