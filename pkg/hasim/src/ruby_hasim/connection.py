"""One client connection: the auth phase, then commands, with an ordered, delayable writer.

Like Home Assistant's `ActiveConnection`, messages are queued synchronously (`send`) and a
writer task sends them in order; with `coalesce_messages` on, messages queued together go out
as one JSON array. The connection owns its writer task and cancels it when it ends.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from ruby_hasim import const, messages
from ruby_hasim.commands import handle
from ruby_hasim.faults import Faults
from ruby_hasim.home import Home
from ruby_hasim.model import JsonObject, JsonValue
from ruby_hasim.services import Services


@dataclass
class Stats:
    """What the simulator has seen, for tests."""

    connections_made: int = 0
    """WebSocket connections accepted."""
    auth_attempts: int = 0
    """`auth` messages received (valid or not)."""
    auth_failures: int = 0
    """`auth_invalid` answers sent."""


class Connection:
    """A client connection. `run` serves it until the client or the simulator closes it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        token: str,
        user_id: str,
        home: Home,
        services: Services,
        faults: Faults,
        stats: Stats,
        on_change: Callable[[], None],
    ) -> None:
        self.ws = ws
        self.home = home
        self.services = services
        self.faults = faults
        self.stats = stats
        self.on_change = on_change
        """Called when the connection authenticates, subscribes or unsubscribes (for waiters)."""
        self.user_id = user_id
        self.authenticated = False
        self.last_id = 0
        self.coalesce = False
        self.subscriptions: dict[int, Callable[[], None]] = {}
        self.subscription_types: dict[int, str] = {}
        """The event type of each subscription (`*` for all), for `Simulator.subscribed_types`."""
        self._token = token
        self._queue: deque[tuple[float, str]] = deque()
        self._pending = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def send(self, message: JsonObject | str) -> None:
        """Queue a message; it leaves after the current fault delay, in order."""
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        due = asyncio.get_running_loop().time() + self.faults.delay
        self._queue.append((due, text))
        self._idle.clear()
        self._pending.set()

    async def run(self) -> None:
        """Serve the connection: authenticate, then handle commands until it closes."""
        writer = asyncio.create_task(self._write(), name="hasim-writer")
        try:
            self.send(messages.auth_required())
            if await self._authenticate():
                await self._serve()
        finally:
            for unsubscribe in self.subscriptions.values():
                unsubscribe()
            self.subscriptions.clear()
            self.subscription_types.clear()
            writer.cancel()
            await asyncio.wait([writer])
            await self.ws.close()

    async def _authenticate(self) -> bool:
        try:
            msg = await self.ws.receive(timeout=const.AUTH_TIMEOUT)
        except TimeoutError:
            return False
        if msg.type is not WSMsgType.TEXT:
            return False
        try:
            data = json.loads(msg.data)
        except ValueError:
            return False
        self.stats.auth_attempts += 1
        problem = _auth_problem(data)
        if problem is not None:
            return await self._refuse(f"Auth message incorrectly formatted: {problem}")
        token = data.get("access_token") if isinstance(data, dict) else None
        if self.faults.auth_refused or not isinstance(token, str):
            return await self._refuse()
        if not secrets.compare_digest(token.encode(), self._token.encode()):
            return await self._refuse()
        self.authenticated = True
        self.send(messages.auth_ok())
        self.on_change()
        return True

    async def _refuse(self, reason: str = const.MSG_INVALID_AUTH) -> bool:
        self.stats.auth_failures += 1
        self.send(messages.auth_invalid(reason))
        await self._idle.wait()
        return False

    async def _serve(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                try:
                    data: Any = json.loads(msg.data)
                except ValueError:
                    return  # Home Assistant disconnects on invalid JSON
                handle(self, data)
            elif msg.type is WSMsgType.PING:
                if not self.faults.pings_muted:
                    await self.ws.pong(msg.data)
            elif msg.type is not WSMsgType.PONG:
                return

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._idle.set()
                self._pending.clear()
                await self._pending.wait()
                continue
            wait = self._queue[0][0] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            now = loop.time()
            batch: list[str] = []
            while self._queue and self._queue[0][0] <= now:
                batch.append(self._queue.popleft()[1])
            try:
                if self.coalesce and len(batch) > 1:
                    await self.ws.send_str("[" + ",".join(batch) + "]")
                else:
                    for text in batch:
                        await self.ws.send_str(text)
            except ConnectionError:
                self._queue.clear()
                self._idle.set()
                return


def _auth_problem(data: JsonValue) -> str | None:
    """Why an auth message is malformed (voluptuous' wording), or None."""
    if not isinstance(data, dict):
        return "expected a dictionary"
    if data.get("type") != const.TYPE_AUTH:
        return "value must be one of ['auth'] for dictionary value @ data['type']"
    for key, value in data.items():
        if key not in ("type", "access_token", "api_password"):
            return f"extra keys not allowed @ data['{key}']"
        if key != "type" and not isinstance(value, str):
            return f"expected str for dictionary value @ data['{key}']"
    if "access_token" in data and "api_password" in data:
        return "two or more values in the same group of exclusion 'auth' @ data[<auth>]"
    return None
