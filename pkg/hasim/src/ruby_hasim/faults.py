"""Fault injection on a running simulator: `Simulator.faults`.

Knobs (`mute_pings`, `delay_responses`, `refuse_auth`, `fail_service`) take effect on the next
message of every connection. Actions (`drop_connections`, `go_down`, `go_up`, `burst`) run in
the simulator's event loop and return when done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from aiohttp import WSCloseCode

from ruby_hasim import const
from ruby_hasim.errors import CommandError
from ruby_hasim.home import Home, light_attributes
from ruby_hasim.services import Services

BURST_DOMAINS = ("light", "switch", "input_boolean", "binary_sensor")
"""The on/off domains `burst` toggles by default."""


class Switchboard(Protocol):
    """What the faults need from the server: close connections, stop and start listening."""

    async def close_connections(self, *, abrupt: bool, code: int = ...) -> int: ...

    async def stop_listening(self) -> None: ...

    async def start_listening(self) -> None: ...


class Faults:
    """The fault knobs and actions of one simulator. Use it from the simulator's event loop."""

    def __init__(self, server: Switchboard, home: Home, services: Services) -> None:
        self._server = server
        self._home = home
        self._services = services
        self.pings_muted = False
        """True: `ping` commands and WebSocket ping frames get no answer."""
        self.delay = 0.0
        """Seconds every message to a client is held back (order is kept)."""
        self.auth_refused = False
        """True: every `auth` gets `auth_invalid`, whatever the token."""
        self.down = False
        """True between `go_down` and `go_up`."""

    def mute_pings(self, on: bool = True) -> None:
        """Stop (or resume) answering `ping` commands and WebSocket ping frames."""
        self.pings_muted = on

    def delay_responses(self, seconds: float) -> None:
        """Deliver every message `seconds` late from now on (0 restores normal service)."""
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        self.delay = seconds

    def refuse_auth(self, on: bool = True) -> None:
        """Answer every `auth` with `auth_invalid` (or stop doing so)."""
        self.auth_refused = on

    def fail_service(
        self,
        domain: str,
        service: str,
        code: str = const.ERR_HOME_ASSISTANT_ERROR,
        message: str | None = None,
    ) -> None:
        """Make `domain.service` fail with `code` (after its `call_service` event, like HA).

        The call is still counted; the state does not change.
        """
        if code not in const.ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}; expected one of {const.ERROR_CODES}")
        text = message or f"Injected failure of {domain}.{service}"
        self._services.failures[(domain, service)] = CommandError(text, code=code)

    def restore_service(self, domain: str, service: str) -> None:
        """Undo `fail_service`."""
        self._services.failures.pop((domain, service), None)

    async def drop_connections(
        self, *, abrupt: bool = True, code: int = WSCloseCode.GOING_AWAY
    ) -> int:
        """Drop every connection now; return how many.

        `abrupt=True` resets the TCP connections with no close frame (a network failure);
        `abrupt=False` sends a WebSocket close frame with `code` first (going away; Home
        Assistant closes a client it gives up on, a slow one, with 1000 as when it stops).
        """
        return await self._server.close_connections(abrupt=abrupt, code=code)

    async def go_down(self, *, abrupt: bool = False) -> None:
        """Stop listening (new connections are refused) and close every connection.

        While down, change the home through `Simulator.set_state` / `remove_entity`; nobody
        hears of it until clients reconnect after `go_up`.
        """
        self.down = True
        await self._server.stop_listening()
        await self._server.close_connections(abrupt=abrupt)

    async def go_up(self) -> None:
        """Listen again on the same port."""
        await self._server.start_listening()
        self.down = False

    async def burst(self, n: int, entity_ids: Iterable[str] | None = None) -> int:
        """Toggle `n` times, round-robin over `entity_ids` (default: every on/off entity).

        Each toggle is a `state_changed` with its own context. Yields to the loop every 256
        changes so writers can flush. Returns the number of changes made.
        """
        targets = list(entity_ids) if entity_ids is not None else self._toggleable()
        if not targets:
            raise ValueError("no entity to change")
        for i in range(n):
            entity = targets[i % len(targets)]
            current = self._home.get(entity)
            on = current is None or current.state != "on"
            attributes = light_attributes(current.attributes, on) if current else None
            is_light = entity.startswith("light.")
            self._home.set_state(entity, "on" if on else "off", attributes if is_light else None)
            if i % 256 == 255:
                await asyncio.sleep(0)
        return n

    def _toggleable(self) -> list[str]:
        return [
            entity
            for entity, state in self._home.states.items()
            if state.domain in BURST_DOMAINS and state.state in ("on", "off")
        ]
