"""The simulator: an aiohttp server that serves a virtual home over HA's WebSocket API."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from aiohttp import WSCloseCode, web

from ruby_hasim import const
from ruby_hasim.connection import Connection, Stats
from ruby_hasim.faults import Faults
from ruby_hasim.home import Home, HomeSpec, default_home
from ruby_hasim.model import Context, Event, JsonObject, JsonValue, State
from ruby_hasim.services import CallKey, Services

CLOSE_TIMEOUT = 1.0
"""Seconds to wait for a client's close frame when the simulator closes a connection."""

DEFAULT_TOKEN = "hasim-token"  # noqa: S105  # the simulator's well-known test token


class Simulator:
    """A Home Assistant WebSocket API on `url`, serving `home`, with fault injection.

    Everything runs in the event loop that calls `start`; no threads. Changes made through
    `set_state`, `remove_entity` and `faults` take effect at once: their events are queued on
    every subscribed connection before the call returns.
    """

    def __init__(
        self,
        home: HomeSpec | None = None,
        *,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        spec = home if home is not None else default_home()
        self.host = host
        self.port = port
        self.token = token
        self.user_id = uuid.uuid4().hex
        """The id of the user the token belongs to (`context.user_id` of service calls)."""
        self.home = Home(spec)
        self.services = Services(self.home, spec)
        self.faults = Faults(self, self.home, self.services)
        self.stats = Stats()
        self._connections: dict[Connection, web.Request] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._changed = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`ws://host:port/api/websocket` (the bound port once started)."""
        return f"ws://{self.host}:{self.port}{const.URL_PATH}"

    @property
    def http_url(self) -> str:
        """`http://host:port`, the base URL that HA clients are usually configured with."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start serving; with `port=0`, bind a free port and set `port`."""
        app = web.Application()
        app.router.add_get(const.URL_PATH, self._websocket)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self.start_listening()

    async def stop(self) -> None:
        """Close every connection and stop the server."""
        await self.close_connections(abrupt=False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- the home ---------------------------------------------------------------------------

    @property
    def states(self) -> Mapping[str, State]:
        """The current states by entity id (read-only, live)."""
        return self.home.states

    def set_state(
        self,
        entity_id: str,
        state: str | None = None,
        attributes: Mapping[str, JsonValue] | None = None,
        *,
        merge: bool = True,
    ) -> State:
        """Change (or add) an entity as a device would; fires `state_changed` if anything changed.

        `state=None` keeps the value; attributes merge into the current ones unless `merge=False`.
        """
        return self.home.set_state(entity_id, state, attributes, merge=merge)

    def remove_entity(self, entity_id: str) -> State | None:
        """Remove an entity (fires `state_changed` with `new_state` null)."""
        return self.home.remove_entity(entity_id)

    def fire_event(
        self, event_type: str, data: JsonObject | None = None, *, context: Context | None = None
    ) -> Event:
        """Fire a bus event as an integration does (a ZHA button, a remote): every subscription
        to `event_type` (or to all events) has it queued before this returns."""
        return self.home.fire(event_type, dict(data or {}), context)

    # --- inspection -------------------------------------------------------------------------

    @property
    def calls(self) -> Counter[CallKey]:
        """`call_service` calls by (domain, service, entity_id); entity None if none targeted."""
        return self.services.calls

    @property
    def connections_made(self) -> int:
        """WebSocket connections accepted since start."""
        return self.stats.connections_made

    @property
    def auth_attempts(self) -> int:
        """`auth` messages received since start."""
        return self.stats.auth_attempts

    @property
    def clients(self) -> int:
        """Connections open and authenticated now."""
        return sum(1 for conn in self._connections if conn.authenticated)

    @property
    def subscribed_types(self) -> Counter[str]:
        """Event subscriptions of authenticated connections, by event type (`*`: all)."""
        return Counter(
            event_type
            for conn in self._connections
            if conn.authenticated
            for event_type in conn.subscription_types.values()
        )

    @property
    def subscribers(self) -> int:
        """Authenticated connections with at least one event subscription."""
        return sum(1 for conn in self._connections if conn.authenticated and conn.subscriptions)

    async def wait_for_clients(
        self,
        n: int = 1,
        *,
        subscribed: bool = False,
        timeout: float = 10.0,  # noqa: ASYNC109  # bounded by default, so no test hangs here
    ) -> None:
        """Wait until at least `n` clients are authenticated (and subscribed, if asked).

        Raises `TimeoutError` after `timeout` seconds.
        """
        async with asyncio.timeout(timeout):
            while (self.subscribers if subscribed else self.clients) < n:
                self._changed.clear()
                await self._changed.wait()

    # --- a restart of Home Assistant -------------------------------------------------------

    async def shut_down(self) -> None:
        """Stop as Home Assistant does: core state ``STOPPING``, no longer listening, and every
        connection closed with a normal close frame (1000). Nothing reaches a client on the
        way: ``homeassistant_stop`` cancels Home Assistant's WebSocket connections before any
        subscriber could be sent it (checked against a real one, tests_ha)."""
        self.home.core_state = "STOPPING"
        await self.stop_listening()
        await self.close_connections(abrupt=False, code=WSCloseCode.OK)

    async def boot(self, *, start: bool = True) -> None:
        """Start again after `shut_down`: every state written anew (`Home.reboot`), listening
        in core state ``NOT_RUNNING``; with ``start``, `finish_start` at once, else later."""
        self.home.reboot()
        await self.start_listening()
        if start:
            self.finish_start()

    def finish_start(self) -> None:
        """End the start as Home Assistant does: ``homeassistant_start`` (core state
        ``STARTING``), then ``homeassistant_started`` (``RUNNING``)."""
        self.home.core_state = "STARTING"
        self.home.fire("homeassistant_start", {})
        self.home.core_state = "RUNNING"
        self.home.fire("homeassistant_started", {})

    # --- the switchboard the faults use -----------------------------------------------------

    async def close_connections(self, *, abrupt: bool, code: int = WSCloseCode.GOING_AWAY) -> int:
        """Close every connection with a close frame of `code`, or resetting TCP when `abrupt`;
        return how many."""
        connections = list(self._connections.items())
        for conn, request in connections:
            if abrupt and request.transport is not None:
                request.transport.abort()
            else:
                await conn.ws.close(code=code, message=b"going down")
        return len(connections)

    async def stop_listening(self) -> None:
        """Stop accepting connections (clients get connection refused)."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def start_listening(self) -> None:
        """Accept connections on `host:port` (the same port again after `stop_listening`)."""
        if self._runner is None:
            raise RuntimeError("the simulator is not started")
        if self._site is None:
            self._site = web.TCPSite(self._runner, self.host, self.port)
            await self._site.start()
            self.port = self._site.port

    # --- serving ----------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        # autoping off: the reader answers ping frames itself, so `mute_pings` can silence them.
        ws = web.WebSocketResponse(autoping=False, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        self.stats.connections_made += 1
        conn = Connection(
            ws,
            token=self.token,
            user_id=self.user_id,
            home=self.home,
            services=self.services,
            faults=self.faults,
            stats=self.stats,
            on_change=self._changed.set,
        )
        self._connections[conn] = request
        try:
            await conn.run()
        finally:
            del self._connections[conn]
            self._changed.set()
        return ws
