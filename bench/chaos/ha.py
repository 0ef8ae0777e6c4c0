"""The run's own Home Assistant WebSocket client: it toggles the sources and records what HA did.

It talks to Home Assistant directly (the real one or the simulator), never through Ruby Core,
so the kills do not touch it. One reader task takes every message: results resolve the command
that waits for them, events go to the `Recorder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.evidence import call_from_event, change_from_event
from chaos.model import Call, Change, Pair

Message = dict[str, Any]


class HaSessionError(RuntimeError):
    """Home Assistant refused a command, or the connection ended."""


@dataclass
class Recorder:
    """Every change of the watched entities and every service call HA received, in order."""

    watched: frozenset[str]
    changes: list[Change] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def event(self, event: Message) -> None:
        kind = event.get("event_type")
        if kind == "state_changed":
            change = change_from_event(event)
            if change is not None and change.entity_id in self.watched:
                self.changes.append(change)
        elif kind == "call_service":
            call = call_from_event(event)
            if call is not None and self.watched.intersection(call.entity_ids):
                self.calls.append(call)

    def of(self, entity_id: str) -> list[Change]:
        return [c for c in self.changes if c.entity_id == entity_id]


class HaSession:
    """An authenticated WebSocket session; `command` may be awaited concurrently."""

    def __init__(
        self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, recorder: Recorder
    ) -> None:
        self._http = http
        self._ws = ws
        self._recorder = recorder
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._reader = asyncio.create_task(self._read(), name="ha-reader")

    @classmethod
    async def connect(cls, url: str, token: str, recorder: Recorder) -> HaSession:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, heartbeat=None, max_msg_size=64 * 2**20)
            hello = await ws.receive_json(timeout=10)
            await ws.send_json({"type": "auth", "access_token": token})
            reply = await ws.receive_json(timeout=10)
        except BaseException:
            await http.close()
            raise
        if (hello.get("type"), reply.get("type")) != ("auth_required", "auth_ok"):
            await http.close()
            raise HaSessionError(f"Home Assistant did not authenticate us: {reply.get('type')}")
        return cls(http, ws, recorder)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        await self._http.close()

    async def command(self, type_: str, timeout: float = 10.0, **fields: Any) -> Any:  # noqa: ASYNC109  # each command has its own bound
        """Send a command; return its ``result`` (raise `HaSessionError` if it failed)."""
        iden = self._next_id
        self._next_id += 1
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[iden] = future
        try:
            await self._ws.send_str(json.dumps({"id": iden, "type": type_, **fields}))
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(iden, None)
        if not reply.get("success", False):
            raise HaSessionError(f"{type_} failed: {reply.get('error')}")
        return reply.get("result")

    async def subscribe(self, event_type: str) -> None:
        await self.command("subscribe_events", event_type=event_type)

    async def states(self, entity_ids: Sequence[str]) -> dict[str, str]:
        """The current state of each of ``entity_ids`` (missing ones are left out)."""
        found = await self.command("get_states")
        wanted = set(entity_ids)
        return {s["entity_id"]: s["state"] for s in found if s["entity_id"] in wanted}

    async def turn(self, entity_id: str, on: bool) -> None:
        domain = entity_id.split(".", 1)[0]
        await self.command(
            "call_service",
            domain=domain,
            service="turn_on" if on else "turn_off",
            target={"entity_id": entity_id},
        )

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                for message in data if isinstance(data, list) else [data]:
                    if message.get("type") == "event":
                        self._recorder.event(message.get("event", {}))
                    elif (future := self._waiting.get(message.get("id", -1))) and not future.done():
                        future.set_result(message)
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(HaSessionError("the Home Assistant connection ended"))

    @property
    def closed(self) -> bool:
        return self._reader.done()


@dataclass
class Toggler:
    """Toggles the sources round-robin at ``rate`` changes per second (all sources together)."""

    session: HaSession
    pairs: Sequence[Pair]
    rate: float
    sent: int = 0
    failed: int = 0
    late: float = 0.0
    """The longest this loop fell behind its schedule, in seconds."""
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, states: dict[str, str], stop: asyncio.Event) -> None:
        """Until ``stop`` is set; ``states`` holds each source's current state (updated)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not stop.is_set():
            source = self.pairs[self.sent % len(self.pairs)].source
            on = states[source] != "on"
            states[source] = "on" if on else "off"
            task = asyncio.create_task(self.session.turn(source, on))
            self._pending.add(task)
            task.add_done_callback(self._done)
            self.sent += 1
            due = start + self.sent / self.rate
            self.late = max(self.late, loop.time() - due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
        if self._pending:
            await asyncio.wait(self._pending, timeout=15)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            self.failed += 1
