"""One authenticated WebSocket connection to Home Assistant.

``HaConnection.open`` authenticates; ``call`` sends a command with the next id and waits for
its result; ``subscribe`` routes a subscription's events to a callback; ``run`` reads until
the socket closes, then fails every waiting call with ``HaDisconnected``. Results and events
are decoded once, here: callers get our tolerant HA models, never raw dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import JsonValue

from ruby_runtime.secret import Secret


class HaError(Exception):
    """Home Assistant answered a command with an error (``code`` is HA's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HaAuthInvalidError(Exception):
    """Home Assistant refused the access token."""


class HaDisconnectedError(Exception):
    """The connection closed (or never opened) before the answer came."""


EventCallback = Callable[[dict[str, Any]], None]


class HaConnection:
    """Not thread-safe; one reader (``run``) and any number of concurrent ``call``s."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._session = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[JsonValue]] = {}
        self._subscriptions: dict[int, EventCallback] = {}
        self.ha_version = ""
        self.close_code: int | None = None
        """The code of Home Assistant's close frame, once it closed the connection itself."""

    @classmethod
    async def open(cls, url: str, token: Secret, *, within: float = 10.0) -> HaConnection:
        """Connect and authenticate; raise HaAuthInvalidError or HaDisconnectedError."""
        session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(within):
                ws = await session.ws_connect(url, heartbeat=None, max_msg_size=0)
                conn = cls(session, ws)
                hello = await ws.receive_json()
                if hello.get("type") == "auth_required":
                    await ws.send_json({"type": "auth", "access_token": token.reveal()})
                    answer = await ws.receive_json()
                else:
                    answer = {"type": "unexpected", "message": f"greeting {hello.get('type')!r}"}
        except (aiohttp.ClientError, TimeoutError, TypeError, ValueError) as exc:
            await session.close()
            raise HaDisconnectedError(f"cannot connect to {url}: {exc!r}") from exc
        except BaseException:
            await session.close()
            raise
        if answer.get("type") == "unexpected":
            await conn.close()
            raise HaDisconnectedError(f"not a Home Assistant WebSocket: {answer['message']}")
        if answer.get("type") != "auth_ok":
            await conn.close()
            raise HaAuthInvalidError(str(answer.get("message", "authentication refused")))
        conn.ha_version = str(answer.get("ha_version", ""))
        return conn

    async def call(self, kind: str, *, within: float = 10.0, **fields: JsonValue) -> JsonValue:
        """Send ``{"id": next, "type": kind, **fields}`` and return its ``result``."""
        message_id = next(self._ids)
        future: asyncio.Future[JsonValue] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        try:
            await self._ws.send_json({"id": message_id, "type": kind, **fields})
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            raise HaDisconnectedError(f"{kind} got no answer within {within}s") from None
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            raise HaDisconnectedError(f"{kind} could not be sent: {exc!r}") from exc
        finally:
            self._waiting.pop(message_id, None)

    async def subscribe(self, callback: EventCallback, event_type: str | None = None) -> int:
        """Subscribe to events (of one type, or all); ``callback`` runs in the reader."""
        fields: dict[str, JsonValue] = {"event_type": event_type} if event_type else {}
        # The subscription id is the command's id: register before the first event can come.
        message_id = next(self._ids)
        self._subscriptions[message_id] = callback
        future: asyncio.Future[JsonValue] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        try:
            await self._ws.send_json({"id": message_id, "type": "subscribe_events", **fields})
            async with asyncio.timeout(10):
                await future
        except BaseException:
            self._subscriptions.pop(message_id, None)
            raise
        finally:
            self._waiting.pop(message_id, None)
        return message_id

    async def unsubscribe(self, subscription: int) -> None:
        """End a subscription; events of it still on the way are dropped."""
        self._subscriptions.pop(subscription, None)
        await self.call("unsubscribe_events", subscription=subscription)

    async def ping(self, within: float) -> None:
        """Raise HaDisconnectedError unless a pong comes back ``within`` seconds."""
        await self.call("ping", within=within)

    async def run(self) -> None:
        """Read until the socket closes; then fail every waiting call."""
        try:
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                data = message.json()
                for item in data if isinstance(data, list) else [data]:
                    self._dispatch(item)
            self.close_code = self._ws.close_code
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(HaDisconnectedError("the connection closed"))

    def _dispatch(self, item: dict[str, Any]) -> None:
        kind, message_id = item.get("type"), item.get("id")
        if kind == "event" and isinstance(message_id, int):
            callback = self._subscriptions.get(message_id)
            if callback is not None:
                callback(item.get("event", {}))
            return
        future = self._waiting.get(message_id) if isinstance(message_id, int) else None
        if future is None or future.done():
            return
        if kind == "pong":
            future.set_result(None)
        elif kind == "result" and item.get("success"):
            future.set_result(item.get("result"))
        elif kind == "result":
            error = item.get("error") or {}
            future.set_exception(
                HaError(str(error.get("code", "unknown_error")), str(error.get("message", "")))
            )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        await self._session.close()
