"""The live event stream, ``GET /api/v1/ws``: EVENTS over a WebSocket (ADR-0020).

- One `EventLog` per gateway reads EVENTS in stream-sequence order, a page at a time
  (`ruby_natsx.direct`: no consumer, read grants only), and keeps the newest `RING` messages.
  It runs while at least one client is connected; a core subscription to EVENTS' subjects
  rings a bell when something new is stored, and a poll every `POLL` seconds catches what the
  bell rang too early for.
- Each client reads the log from its own cursor at its own pace: from the ring, or straight
  from the stream when it asks for older messages. The log never waits for a client.
- Every message names its stream sequence; a client that reconnects with ``since=<the last
  seq it saw>`` gets exactly what came after it, filtered as it asks: no gap, no duplicate.
  What the stream no longer holds (older than its max age) is announced as a ``gap``.
- A client whose socket has not taken a page within `SEND_TIMEOUT` seconds is cut off (close
  code 4008, with the sequence to resume from); the log and the other clients go on.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import structlog
from aiohttp import WSMsgType, web
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from ruby_gateway.api.edge import TOKEN_HEADER
from ruby_gateway.api.problems import problem
from ruby_natsx.direct import Stored, read_page
from ruby_natsx.subjects import (
    HaEventSubject,
    HaLifecycleSubject,
    OutcomeSubject,
    RuleSubject,
    StateSubject,
    SubjectError,
    Subjects,
)

log = structlog.get_logger("ruby_gateway.api.stream")

RING: Final = 10_000
"""Messages the log keeps in memory for clients that are (nearly) caught up..."""
RING_BYTES: Final = 32 * 1024 * 1024
"""...and the bytes they may take; older ones are read from the stream again when asked for."""
PAGE: Final = 256
"""Messages read from the stream per direct get, and sent to a client per turn."""
POLL: Final = 0.5
"""Seconds between reads when the bell stays silent."""
SEND_TIMEOUT: Final = 10.0
"""Seconds a client's socket may take to accept a page before the client is cut off."""
HEARTBEAT: Final = 20.0
"""Seconds between the server's pings; a client that does not answer one is closed."""
SUBPROTOCOL: Final = "ruby.v1"
"""The one subprotocol the server answers (never the ``bearer.`` one a browser offers)."""
SLOW: Final = 4008
"""Close code for a client cut off for not reading."""
UNAVAILABLE: Final = 1011
KINDS: Final = ("states", "events", "rules", "commands")
GLOB: Final = re.compile(r"[A-Za-z0-9_.*?-]{1,255}")
QUERY: Final = frozenset({"kinds", "entities", "rules", "since"})


@dataclass(frozen=True)
class Entry:
    """One EVENTS message as clients receive it: its kind, what it is about, its frame."""

    seq: int
    kind: str
    about: str
    """The entity id (states), event type (events), rule id (rules), domain.service (commands)."""
    frame: str


def entry(subjects: Subjects, stored: Stored) -> Entry | None:
    """The client-facing form of a stored message; None for one that is not ours to show (a
    subject outside the convention, a payload that is not JSON)."""
    try:
        parsed = subjects.parse(stored.subject)
        json.loads(stored.data)
    except (SubjectError, ValueError):
        return None
    match parsed:
        case StateSubject(entity_id):
            kind, about = "states", entity_id
        case HaEventSubject(event_type):
            kind, about = "events", event_type
        case HaLifecycleSubject(event):
            kind, about = "events", event
        case RuleSubject(rule_id, _):
            kind, about = "rules", rule_id
        case OutcomeSubject(_, domain, service):
            kind, about = "commands", f"{domain}.{service}"
        case _:
            return None
    head = json.dumps(
        {
            "type": "event",
            "seq": stored.seq,
            "kind": kind[:-1],
            "subject": stored.subject,
            "time": stored.time,
        }
    )
    return Entry(stored.seq, kind, about, f'{head[:-1]}, "event": {stored.data.decode()}}}')


class EventLog:
    """EVENTS in sequence order, shared by every client (see the module's docstring).

    `attach` and `detach` count clients; the first starts the reader, the last stops it.
    `after` never blocks the reader: each caller waits on its own."""

    def __init__(self, nc: Client, subjects: Subjects, stream: str, *, ring: int = RING) -> None:
        self._nc, self._subjects, self._stream, self._ring = nc, subjects, stream, ring
        self._entries: list[Entry] = []
        self._bytes = 0
        self._from = 0  # the ring holds every shown message with seq in (_from, head]
        self.head = 0
        self._grown = asyncio.Event()
        self._bell = asyncio.Event()
        self._clients = 0
        self._reader: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()

    async def attach(self) -> None:
        """Count a client in; raises what reading the stream's state raises (NATS away), and
        then counts nothing."""
        async with self._lock:
            if self._reader is not None:
                self._clients += 1
                return
            info = await self._nc.jetstream().stream_info(self._stream)
            self._clients += 1
            self.head = self._from = info.state.last_seq
            self._entries, self._bytes = [], 0

            async def ring(_msg: object) -> None:
                self._bell.set()

            self._sub = await self._nc.subscribe(self._subjects.events_all, cb=ring)
            self._reader = asyncio.create_task(self._read(), name="api-event-log")

    async def detach(self) -> None:
        async with self._lock:
            self._clients -= 1
            if self._clients == 0:
                await self._stop()

    async def close(self) -> None:
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closing
                await self._sub.unsubscribe()
            self._sub = None
        self._entries, self._bytes = [], 0

    async def _read(self) -> None:
        """Read what is new, page by page, for as long as a client is attached."""
        delay = POLL
        while True:
            self._bell.clear()
            try:
                page = await read_page(
                    self._nc,
                    self._stream,
                    seq=self.head + 1,
                    batch=PAGE,
                    subject=self._subjects.events_all,
                )
            except Exception as exc:  # NATS away or refusing: say it, try again
                log.warning("event log read failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = POLL
            if page.messages:
                self.head = page.messages[-1].seq  # read, whether shown or not
                self._append([e for m in page.messages if (e := entry(self._subjects, m))])
            if not page.more:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL):
                        await self._bell.wait()

    @property
    def held(self) -> tuple[int, int]:
        """The messages and bytes the ring holds now (bounded by `RING` and `RING_BYTES`)."""
        return len(self._entries), self._bytes

    async def first(self) -> int:
        """The oldest sequence the stream still holds."""
        info = await self._nc.jetstream().stream_info(self._stream)
        return int(info.state.first_seq)

    def _append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        self._entries += entries
        self._bytes += sum(len(e.frame) for e in entries)
        if len(self._entries) > self._ring or self._bytes > RING_BYTES:  # trim by a quarter
            keep, kept_bytes = len(self._entries), self._bytes
            while keep > 3 * self._ring // 4 or kept_bytes > 3 * RING_BYTES // 4:
                keep -= 1
                kept_bytes -= len(self._entries[-keep - 1].frame)
            dropped = len(self._entries) - keep
            self._from = self._entries[dropped - 1].seq
            del self._entries[:dropped]
            self._bytes = kept_bytes
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def after(self, seq: int) -> tuple[int, list[Entry]]:
        """The messages after ``seq`` (at most a page) and the sequence they reach; waits until
        there is something new. Older than the ring: read from the stream, uncached."""
        while True:
            if seq >= self._from:
                grown = self._grown
                start = bisect.bisect_right(self._entries, seq, key=lambda e: e.seq)
                if start < len(self._entries):
                    ring = self._entries[start : start + PAGE]
                    return ring[-1].seq if len(ring) == PAGE else self.head, ring
                if self.head > seq:  # read, but nothing shown
                    return self.head, []
                await grown.wait()
            else:
                page = await read_page(
                    self._nc,
                    self._stream,
                    seq=seq + 1,
                    batch=PAGE,
                    subject=self._subjects.events_all,
                )
                if not page.messages:
                    return self._from, []
                shown = [e for m in page.messages if (e := entry(self._subjects, m))]
                return page.messages[-1].seq, shown


@dataclass(frozen=True)
class Filter:
    """What a client asked for: kinds, entity globs (states), rule ids or globs (rules)."""

    kinds: frozenset[str] = frozenset(KINDS)
    entities: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    since: int | None = None
    _memo: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def wants(self, e: Entry) -> bool:
        if e.kind not in self.kinds:
            return False
        globs = self.entities if e.kind == "states" else self.rules if e.kind == "rules" else ()
        if not globs:
            return True
        key = f"{e.kind}:{e.about}"
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = any(fnmatch.fnmatchcase(e.about, g) for g in globs)
        return hit


class QueryError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def parse_query(query: Mapping[str, str]) -> Filter:
    """The client's filter from the query string; `QueryError` names a bad field."""
    unknown = sorted(set(query) - QUERY)
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter; known: {', '.join(sorted(QUERY))}")

    def listed(name: str) -> tuple[str, ...]:
        items = tuple(i.strip() for i in query.get(name, "").split(",") if i.strip())
        for item in items:
            if not GLOB.fullmatch(item):
                raise QueryError(name, f"{item!r} is not a name or glob ([A-Za-z0-9_.*?-])")
        return items

    kinds = listed("kinds")
    for kind in kinds:
        if kind not in KINDS:
            raise QueryError("kinds", f"{kind!r} is not one of {', '.join(KINDS)}")
    since: int | None = None
    if "since" in query:
        try:
            since = int(query["since"])
        except ValueError:
            raise QueryError("since", "a stream sequence: a whole number") from None
        if since < 0:
            raise QueryError("since", "a stream sequence: 0 or more")
    return Filter(frozenset(kinds or KINDS), listed("entities"), listed("rules"), since)


class EventStream:
    """The ``/api/v1/ws`` handler: one task pair per client (a sender reading the log, a
    receiver answering pings and noticing the close)."""

    def __init__(self, log_: EventLog, *, send_timeout: float = SEND_TIMEOUT) -> None:
        self._log, self._send_timeout = log_, send_timeout
        self._open: set[web.WebSocketResponse] = set()

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._open)

    @property
    def log(self) -> EventLog:
        return self._log

    async def close(self) -> None:
        """Close every client (1001, going away: they resume with ``since``), stop the log."""
        for ws in list(self._open):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await ws.close(code=1001, message=b"the gateway is stopping")
        await self._log.close()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        try:
            wanted = parse_query(request.query)
        except QueryError as exc:
            return problem(
                400, "invalid-query", str(exc), errors=[{"field": exc.name, "message": str(exc)}]
            )
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=HEARTBEAT)
        if not ws.can_prepare(request).ok:
            return problem(
                426,
                "upgrade-required",
                "this route speaks WebSocket only",
                headers={"Upgrade": "websocket"},
            )
        await ws.prepare(request)
        who = request.headers.get(TOKEN_HEADER, "unknown")
        try:
            await self._log.attach()
        except Exception as exc:  # NATS away: the client is told, and retries
            log.warning("api stream unavailable", client=who, error=str(exc) or type(exc).__name__)
            await ws.close(code=UNAVAILABLE, message=b"the event stream is unavailable; retry")
            return ws
        self._open.add(ws)
        try:
            sender = asyncio.create_task(self._send(ws, request, wanted, who), name="api-ws-send")
            try:
                async for msg in ws:  # pings are answered by aiohttp as they are read
                    if msg.type == WSMsgType.ERROR:
                        break
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender  # a client gone mid-send: nothing to say to it
        finally:
            self._open.discard(ws)
            await self._log.detach()
        return ws

    async def _send(
        self, ws: web.WebSocketResponse, request: web.Request, wanted: Filter, who: str
    ) -> None:
        head = self._log.head
        cursor = head if wanted.since is None else min(wanted.since, head)
        await ws.send_json({"type": "hello", "seq": cursor, "head": head})
        if wanted.since is not None:
            first = await self._log.first()
            if wanted.since + 1 < first:
                await ws.send_json(
                    {
                        "type": "gap",
                        "from": wanted.since + 1,
                        "to": first - 1,
                        "reason": "older than the event stream keeps",
                    }
                )
        delay = POLL
        while True:
            try:
                reached, page = await self._log.after(cursor)
            except Exception as exc:  # reading the stream failed: wait, try again
                log.warning(
                    "api stream read failed", client=who, error=str(exc) or type(exc).__name__
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, 10.0)
                continue
            delay = POLL
            try:
                async with asyncio.timeout(self._send_timeout):
                    for e in page:
                        if wanted.wants(e):
                            await ws.send_str(e.frame)
                        cursor = e.seq
            except TimeoutError:
                await self._cut(ws, request, cursor, who)
                return
            cursor = reached

    async def _cut(
        self, ws: web.WebSocketResponse, request: web.Request, cursor: int, who: str
    ) -> None:
        """Close a client that stopped reading; its socket is dropped if even that stalls."""
        reason = f"too slow: resume with since={cursor}"
        log.warning("api stream client cut off", client=who, resume_from=cursor)
        try:
            async with asyncio.timeout(1.0):
                await ws.close(code=SLOW, message=reason.encode())
        except TimeoutError:
            pass
        finally:  # even a transport already closing: it would wait for the client to read
            if request.transport is not None:
                request.transport.abort()
