"""Pytest fixtures and a small client for tests against a simulated Home Assistant.

Load with ``-p ruby_hasim.testing``. Fixtures:

- ``hasim``: a running `Simulator` of the default home (token `DEFAULT_TOKEN`) on a free
  127.0.0.1 port, per test; stopped after it.
- ``hasim_factory``: ``await hasim_factory(home=None, token=...)`` starts simulators of the
  test's own (a generated home, another token); each is stopped when the test ends.
- ``ha_client``: an authenticated `HaClient` connected to ``hasim``, closed after the test.

Helper: `HaClient`, a minimal Home Assistant WebSocket client (numbered commands, an event
queue, coalesced messages unpacked) for talking to the simulator, or to a real Home Assistant.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest_asyncio

from ruby_hasim.home import HomeSpec
from ruby_hasim.server import DEFAULT_TOKEN, Simulator

Message = dict[str, Any]
"""A decoded message as received (tests inspect it freely)."""

SimulatorFactory = Callable[..., Awaitable[Simulator]]


class HaClient:
    """A test client for Home Assistant's WebSocket API. Not safe for concurrent `command`s.

    Messages that are not the awaited result (events, other results) are kept in `inbox`, so
    `command` then `next_event` sees every event in order.
    """

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws
        self.next_id = 1
        self.inbox: deque[Message] = deque()
        self._buffer: deque[Message] = deque()

    @classmethod
    async def connect(cls, url: str, token: str | None = DEFAULT_TOKEN) -> HaClient:
        """Connect to `url`; authenticate with `token` unless it is None (then nothing is sent)."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, autoping=False)
        except BaseException:
            await session.close()
            raise
        client = cls(session, ws)
        if token is not None:
            required = await client.receive()
            assert required["type"] == "auth_required", required
            await client.send({"type": "auth", "access_token": token})
            reply = await client.receive()
            assert reply["type"] == "auth_ok", reply
        return client

    async def close(self) -> None:
        """Close the WebSocket and the session."""
        await self.ws.close()
        await self.session.close()

    async def send(self, message: Message) -> None:
        """Send one raw message."""
        await self.ws.send_str(json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> Message:  # noqa: ASYNC109  # tests bound waits
        """The next message from the server (unpacking coalesced arrays)."""
        while not self._buffer:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"connection ended: {msg.type.name} {msg.data!r}")
            data = json.loads(msg.data)
            self._buffer.extend(data if isinstance(data, list) else [data])
        return self._buffer.popleft()

    async def command(self, type_: str, **fields: Any) -> Message:
        """Send a command with the next id; return its result (or pong) message."""
        iden = self.next_id
        self.next_id += 1
        await self.send({"id": iden, "type": type_, **fields})
        return await self.reply(iden)

    async def reply(self, iden: int, timeout: float = 5.0) -> Message:  # noqa: ASYNC109  # as above
        """Wait for the result (or pong) of command `iden`; keep other messages in `inbox`."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout=timeout)
                if message.get("id") == iden and message.get("type") in ("result", "pong"):
                    return message
                self.inbox.append(message)

    async def next_event(self, timeout: float = 5.0) -> Message:  # noqa: ASYNC109  # as above
        """The next `event` message (from `inbox` first)."""
        async with asyncio.timeout(timeout):
            while True:
                message = self.inbox.popleft() if self.inbox else await self.receive(timeout)
                if message.get("type") == "event":
                    return message

    async def fire_event(self, event_type: str, data: dict[str, Any] | None = None) -> Message:
        """Fire a bus event with the `fire_event` command; return its result message."""
        fields = {"event_data": data} if data is not None else {}
        return await self.command("fire_event", event_type=event_type, **fields)

    async def subscribe(self, event_type: str | None = None) -> int:
        """Subscribe to events (all, or of `event_type`); return the subscription id."""
        fields = {"event_type": event_type} if event_type else {}
        result = await self.command("subscribe_events", **fields)
        assert result["success"], result
        return int(result["id"])


@pytest_asyncio.fixture
async def hasim_factory() -> AsyncIterator[SimulatorFactory]:
    started: list[Simulator] = []

    async def start(home: HomeSpec | None = None, **options: Any) -> Simulator:
        sim = Simulator(home, **options)
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture
async def hasim(hasim_factory: SimulatorFactory) -> Simulator:
    return await hasim_factory()


@pytest_asyncio.fixture
async def ha_client(hasim: Simulator) -> AsyncIterator[HaClient]:
    client = await HaClient.connect(hasim.url, hasim.token)
    yield client
    await client.close()
