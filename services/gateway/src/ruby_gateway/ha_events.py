"""Home Assistant bus events -> JetStream: only the event types the engine's rules listen to.

Promises (ADR-0030):
- `WantedTypes` knows the event types the engine asks for: its record ``engine.event_types``
  in the status bucket, read with a direct get at start, then every put received on a core
  subscription to that one key (services cannot watch KV), and read again every ``resync``
  seconds (a put sent while this connection was reconnecting to NATS is not received).
  A type that cannot be a subject token, and ``state_changed`` (published as state changes),
  are logged and left out.
- `HaEvents.follow` keeps one HA session's subscriptions equal to that set: it subscribes to
  each wanted type (``subscribe_events`` with ``event_type``) when the session starts,
  subscribes and unsubscribes as the set changes, and ends with the session; the next session
  subscribes to all again.
- `HaEvents.forward` publishes each event as ``ha.event.v1`` on
  ``<prefix>.evt.ha.event.<event_type>`` with ``Nats-Msg-Id``
  ``ha.event.<event_type>.<context id>.<time_fired>``, through the bridge's publisher, in the
  order the bridge hands them over (HA's order, state changes included), with at most
  ``window`` unacknowledged. Home Assistant cannot replay its bus: an event JetStream does not
  store, or one fired while no session is up, is lost, and logged and counted as such.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from ruby_gateway.ha_client import EventCallback, HaConnection, HaDisconnectedError, HaError
from ruby_natsx.errors import TransientError
from ruby_natsx.publish import MSG_ID, Publisher
from ruby_natsx.subjects import SubjectError, Subjects, check_token
from ruby_natsx.topology import EVENT_TYPES_KEY, STATUS, topology
from ruby_schemas.envelope import make_envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha import HaEvent
from ruby_schemas.registry import decode, encode

log = structlog.get_logger("ruby_gateway.ha_events")

RESYNC = 30.0
"""Seconds between reads of the record besides the puts received."""
STATE_CHANGED = "state_changed"


@dataclass
class HaEventsStatus:
    """What the gateway forwards, for its status record."""

    wanted: tuple[str, ...] = ()
    """The event types forwarded (from the engine's record)."""
    refused: tuple[str, ...] = ()
    """Types the record names that cannot be forwarded (not a subject token, state_changed)."""
    subscribed: tuple[str, ...] = ()
    """The types subscribed to on the current Home Assistant session."""
    forwarded: int = 0
    """Events JetStream stored."""
    lost: int = 0
    """Events JetStream did not store."""
    skipped: int = 0
    """Events unreadable, or of a type no longer wanted when they arrived."""


def event_message_id(event: HaEvent) -> str:
    """The ``Nats-Msg-Id`` (and envelope id) of a forwarded event: the same for a redelivery."""
    fired = event.time_fired.isoformat()
    return f"ha.event.{event.event_type}.{event.context.id}.{fired}"


class WantedTypes:
    """The event types to forward, following the engine's record until `close`. One loop."""

    def __init__(
        self, nc: Client, status_bucket: str, status: HaEventsStatus, *, resync: float = RESYNC
    ) -> None:
        self._nc, self._status, self._resync = nc, status, resync
        self._stream = f"KV_{status_bucket}"
        self._subject = f"$KV.{status_bucket}.{EVENT_TYPES_KEY}"
        self.current: frozenset[str] = frozenset()
        self._time: datetime | None = None  # the envelope time of the record applied last
        self._changed = asyncio.Event()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to the record's puts, then read it; follow it from then on."""
        self._sub = await self._nc.subscribe(self._subject)
        await self._read()
        self._task = asyncio.create_task(self._follow(), name="ha-event-types")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await self._sub.unsubscribe()

    def next_change(self) -> asyncio.Event:
        """An event set at the next change of `current`: take it before reading `current`."""
        return self._changed

    async def _follow(self) -> None:
        assert self._sub is not None  # noqa: S101  # set by start
        while True:
            try:
                msg = await self._sub.next_msg(timeout=self._resync)
            except nats.errors.TimeoutError:
                await self._read()
                continue
            except Exception as exc:  # the subscription is unusable: reading still works
                log.warning("event types record not followed", error=repr(exc))
                await asyncio.sleep(self._resync)
                await self._read()
                continue
            operation = (msg.headers or {}).get("KV-Operation")
            self.apply(None if operation in ("DEL", "PURGE") else msg.data, newest=True)

    async def _read(self) -> None:
        try:
            msg = await self._nc.jetstream().get_msg(
                self._stream, subject=self._subject, direct=True
            )
        except NotFoundError:
            self.apply(None, newest=False)
        except Exception as exc:  # NATS away, or the bucket not there yet: the next read tells
            log.warning("event types to forward not read", error=repr(exc), retry_in=self._resync)
        else:
            operation = (msg.headers or {}).get("KV-Operation")
            self.apply(None if operation in ("DEL", "PURGE") else msg.data, newest=False)

    def apply(self, data: bytes | None, *, newest: bool) -> None:
        """Take the record ``data`` (None: no record). A put received is the newest; a record
        read is taken only if it is not older than the one applied (a put may arrive before
        the write is stored and readable)."""
        types: tuple[str, ...] = ()
        if data:
            try:
                envelope = decode(data)
            except ContractError as exc:
                log.error("unreadable event types record ignored", error=str(exc))  # noqa: TRY400 - no traceback helps
                return
            if not isinstance(envelope.data, HaEventTypesV1):
                log.error("event types record of another type ignored", type=envelope.type)
                return
            if not newest and self._time is not None and envelope.time < self._time:
                return
            self._time, types = envelope.time, envelope.data.event_types
        elif not newest and self._time is not None:
            return  # nothing readable yet, but a put was received: keep it
        wanted, refused = set(), []
        for event_type in types:
            try:
                check_token(event_type, "event type")
            except SubjectError as exc:
                refused.append(event_type)
                log.error("event type cannot be a subject; not forwarded", error=str(exc))  # noqa: TRY400 - no traceback helps
                continue
            if event_type == STATE_CHANGED:
                refused.append(event_type)
                log.warning("state_changed is published as state changes; not as an event")
                continue
            wanted.add(event_type)
        self._status.refused = tuple(refused)
        if wanted != self.current:
            self.current = frozenset(wanted)
            self._status.wanted = tuple(sorted(wanted))
            log.info("home assistant event types to forward", event_types=self._status.wanted)
            self._changed.set()
            self._changed = asyncio.Event()


class HaEvents:
    """Subscribes HA sessions to the wanted event types and forwards their events.

    `start` before the first session, `close` after the last. `forward` is called by one task
    (the bridge's ordered loop); `follow` runs once per session, as a task of its own.
    """

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        publisher: Publisher,
        status: HaEventsStatus,
        *,
        service: str,
        window: int,
        resync: float = RESYNC,
    ) -> None:
        self._subjects, self._publisher, self.status = subjects, publisher, status
        self._service, self._window = service, window
        bucket = topology(subjects).bucket(STATUS).bucket
        self.wanted = WantedTypes(nc, bucket, status, resync=resync)
        self._in_flight: deque[asyncio.Future[int]] = deque()

    async def start(self) -> None:
        await self.wanted.start()

    async def close(self) -> None:
        await self.wanted.close()

    async def follow(self, conn: HaConnection, receive: EventCallback) -> None:
        """Keep ``conn`` subscribed to the wanted types, events to ``receive``; until
        cancelled. Raises `HaDisconnectedError` when Home Assistant stops answering."""
        subscribed: dict[str, int] = {}
        try:
            while True:
                change, wanted = self.wanted.next_change(), self.wanted.current
                for event_type in sorted(wanted - subscribed.keys()):
                    with contextlib.suppress(HaError):  # refused: logged; tried again next time
                        subscribed[event_type] = await _subscribe(conn, receive, event_type)
                for event_type in sorted(subscribed.keys() - wanted):
                    await _unsubscribe(conn, event_type, subscribed.pop(event_type))
                self.status.subscribed = tuple(sorted(subscribed))
                await change.wait()
        finally:
            self.status.subscribed = ()

    async def forward(self, raw: Mapping[str, object]) -> None:
        """Publish one bus event, if its type is wanted; return once sent. Never raises for
        the event itself: a failure is logged, counted, and the event is lost."""
        try:
            event = HaEvent.model_validate(raw)
        except ValidationError as exc:
            self.status.skipped += 1
            log.warning("unreadable home assistant event skipped", error=str(exc))
            return
        if event.event_type not in self.wanted.current:  # it came before the unsubscribe
            self.status.skipped += 1
            return
        message_id = event_message_id(event)
        envelope = make_envelope(
            event.to_payload(),
            source=f"ruby/{self._service}",
            time=event.time_fired,
            message_id=message_id,
        )
        subject = self._subjects.ha_event(event.event_type)  # a token: wanted types are
        try:
            ack = await self._publisher.send(subject, encode(envelope), {MSG_ID: message_id})
        except TransientError as exc:
            self._lost(message_id, exc)
            return
        ack.add_done_callback(lambda done: self._acked(message_id, done))
        self._in_flight.append(ack)
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft()
        if len(self._in_flight) > self._window:
            await asyncio.wait([self._in_flight.popleft()])

    def _acked(self, message_id: str, ack: asyncio.Future[int]) -> None:
        if ack.cancelled():
            self._lost(message_id, "the publisher was closed")
        elif (exc := ack.exception()) is not None:
            self._lost(message_id, exc)
        else:
            self.status.forwarded += 1

    def _lost(self, message_id: str, why: object) -> None:
        self.status.lost += 1
        log.error(
            "home assistant event not stored by JetStream: lost", id=message_id, error=str(why)
        )


async def _subscribe(conn: HaConnection, receive: EventCallback, event_type: str) -> int:
    try:
        subscription = await conn.subscribe(receive, event_type)
    except (TimeoutError, ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
        raise HaDisconnectedError(f"subscribe_events {event_type} failed: {exc!r}") from exc
    except HaError as exc:
        log.error("home assistant refused the subscription", event_type=event_type, error=str(exc))  # noqa: TRY400 - no traceback helps
        raise
    log.info("subscribed to home assistant events", event_type=event_type)
    return subscription


async def _unsubscribe(conn: HaConnection, event_type: str, subscription: int) -> None:
    with contextlib.suppress(HaError):  # not_found: it is gone anyway
        await conn.unsubscribe(subscription)
    log.info("unsubscribed from home assistant events", event_type=event_type)
