"""Home Assistant's start and shutdown, announced on EVENTS once per run (ADR-0032).

Home Assistant says little over its WebSocket API: ``homeassistant_started`` reaches a client
connected while it starts (``get_config`` then says ``NOT_RUNNING`` or ``STARTING``: its
HTTP server answers about 0.15 s before that, measured), and ``homeassistant_stop`` never
does (it cancels every WebSocket connection before a subscriber could be sent it); it closes
the connection with a normal close frame (1000) instead. No boot id or start time is offered,
but Home Assistant writes every state anew when it starts: the earliest ``last_changed`` of
its states marks the run (its *boot*), and a session that finds that mark later than when the
gateway last found the run up (`HaRunRecord.seen`, kept in the status bucket under
``gateway.ha_run``) is in a new run. So:

- **start**: seen ``live`` when a session began while Home Assistant was starting and
  ``homeassistant_started`` arrived; seen on ``reconnect`` when a session finds Home Assistant
  running in a new run (it started while the gateway was away, or too fast to be seen). A run
  a new installation's gateway first finds running is recorded, not announced: nobody
  watched it start.
- **shutdown**: Home Assistant closed the session with a normal close frame, and the next
  attempt finds it down (connection refused), not running, or in a new run. A crash (no
  close frame) is no shutdown, as in Home Assistant.

Each announcement is an ``ha.lifecycle.v1`` on ``<prefix>.evt.ha.lifecycle.<event>`` with
message id ``ha.lifecycle.<event>.<boot>``: a gateway restart finds the same run and says
nothing; one killed between announcing and recording announces the same id again, which
JetStream drops within its duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog
from aiohttp import WSCloseCode
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from ruby_gateway.ha_client import HaConnection, HaError
from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import STATUS, topology
from ruby_schemas.envelope import make_envelope
from ruby_schemas.ha import HaEvent
from ruby_schemas.ha_events import HaLifecycleEvent, HaLifecycleV1
from ruby_schemas.status import HaRunRecord, StatusRecordError, read_record

log = structlog.get_logger("ruby_gateway.lifecycle")

STARTED = "homeassistant_started"
STARTING_STATES = frozenset({"NOT_RUNNING", "STARTING"})
"""``get_config`` states in which ``homeassistant_started`` is still to come."""
RUN_KEY = "ha_run"
"""The record's key below the gateway's own status key."""


@dataclass(frozen=True, slots=True)
class _Closed:
    """Home Assistant closed a session normally: a shutdown, unless the run is found again."""

    boot: datetime
    at: datetime
    version: str


class HaLifecycle:
    """Announces Home Assistant's start and shutdown; one per gateway, in the bridge's loop.

    `load` once before the first session; `follow` runs as a task of each session (after the
    states were read); `session_ended` after each session, `unreachable` after each failed
    connection attempt. Publishing waits until JetStream stored the announcement; one that
    cannot be stored is logged as lost (a start is then announced by the next session).
    """

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        publisher: Publisher,
        *,
        service: str,
    ) -> None:
        self._nc, self._subjects, self._publisher = nc, subjects, publisher
        self._service = service
        status_bucket = topology(subjects).bucket(STATUS).bucket
        self._stream = f"KV_{status_bucket}"
        self._key = f"$KV.{status_bucket}.{service}.{RUN_KEY}"
        self.run: HaRunRecord | None = None
        """The run the gateway knows (as recorded)."""
        self.announced: list[HaLifecycleV1] = []
        """What this process announced, in order (for its status and tests)."""
        self._closed: _Closed | None = None

    async def load(self) -> None:
        """Read the record of the run the gateway knows (an earlier process's)."""
        try:
            msg = await self._nc.jetstream().get_msg(self._stream, subject=self._key, direct=True)
        except NotFoundError:
            return
        except Exception as exc:  # NATS away: the first session then records what it finds
            log.warning("home assistant run record not read", error=repr(exc))
            return
        try:
            self.run = read_record(HaRunRecord, msg.data or b"", key=self._key)
        except StatusRecordError as exc:
            log.error("home assistant run record unreadable; ignored", error=str(exc))  # noqa: TRY400 - no traceback helps

    async def follow(self, conn: HaConnection, boot: datetime | None) -> None:
        """One session's part, until cancelled: ``boot`` is the earliest ``last_changed`` of
        the states read when it began (None: no state). Raises `HaDisconnectedError` when
        Home Assistant stops answering."""
        started: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        try:
            state = await _core_state(conn)
            if state in STARTING_STATES:  # subscribed only while a start is to come
                subscription = await conn.subscribe(started.put_nowait, STARTED)
                state = await _core_state(conn)  # it may have started before the subscription
        except HaError as exc:
            log.error("home assistant's state not read: start and shutdown unknown", error=str(exc))  # noqa: TRY400 - no traceback helps
            await asyncio.get_running_loop().create_future()  # the session goes on without
        await self._session(state, boot, conn.ha_version)
        while state in STARTING_STATES:
            try:
                event = HaEvent.model_validate(await started.get())
            except ValidationError as exc:
                log.warning("unreadable homeassistant_started skipped", error=str(exc))
                continue
            run = boot or event.time_fired
            if await self._announce("start", run, event.time_fired, "live", conn.ha_version):
                await self._remember(run)
            with contextlib.suppress(HaError):  # one start per session
                await conn.unsubscribe(subscription)
            break
        await asyncio.get_running_loop().create_future()  # nothing more to do this session

    def session_ended(self, conn: HaConnection) -> None:
        """A session on ``conn`` ended (``close_code``: Home Assistant's close frame's)."""
        if conn.close_code == WSCloseCode.OK and self.run is not None:
            self._closed = _Closed(self.run.boot, datetime.now(UTC), conn.ha_version)

    async def unreachable(self) -> None:
        """A connection attempt failed: after a normal close, Home Assistant shut down."""
        closed, self._closed = self._closed, None
        if closed is not None:
            await self._announce("shutdown", closed.boot, closed.at, "live", closed.version)

    async def _session(self, state: str, boot: datetime | None, version: str) -> None:
        known = self.run
        same_run = (
            state == "RUNNING" and known is not None and boot is not None and boot <= known.seen
        )
        closed, self._closed = self._closed, None
        if closed is not None and not same_run:
            await self._announce("shutdown", closed.boot, closed.at, "live", closed.version)
        if state != "RUNNING":
            return  # starting: the start is announced by `follow`; stopping: nothing yet
        if boot is None:
            log.warning("home assistant has no state: whether it restarted is unknown")
        elif known is None:
            log.info("home assistant run recorded (its start was not seen)", boot=boot.isoformat())
            await self._remember(boot)
        elif same_run:
            await self._remember(known.boot)
        elif await self._announce("start", boot, boot, "reconnect", version):
            await self._remember(boot)

    async def _announce(
        self,
        event: HaLifecycleEvent,
        boot: datetime,
        at: datetime,
        seen: Literal["live", "reconnect"],
        version: str,
    ) -> bool:
        payload = HaLifecycleV1(event=event, boot=boot, at=at, seen=seen, ha_version=version)
        message_id = f"ha.lifecycle.{event}.{boot.isoformat()}"
        envelope = make_envelope(
            payload, source=f"ruby/{self._service}", message_id=message_id, time=at
        )
        try:
            await self._publisher.publish([Outbound(self._subjects.ha_lifecycle(event), envelope)])
        except TransientError as exc:
            log.error("home assistant lifecycle event not stored: lost", id=message_id,  # noqa: TRY400 - no traceback helps
                      error=str(exc))  # fmt: skip
            return False
        self.announced.append(payload)
        log.info("home assistant lifecycle", what=event, boot=boot.isoformat(), seen=seen)
        return True

    async def _remember(self, boot: datetime) -> None:
        record = HaRunRecord(boot=boot, seen=datetime.now(UTC))
        try:
            ack = await self._publisher.send(self._key, record.model_dump_json().encode(), {})
            await ack
        except TransientError as exc:  # the next session records it again
            log.warning("home assistant run record not stored", error=str(exc))
        self.run = record


async def _core_state(conn: HaConnection) -> str:
    """Home Assistant's core state (``get_config``): ``RUNNING``, ``STARTING``..."""
    config = await conn.call("get_config")
    return str(config.get("state", "")) if isinstance(config, dict) else ""
