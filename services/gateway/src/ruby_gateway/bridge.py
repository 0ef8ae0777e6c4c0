"""Home Assistant -> JetStream: live state changes, reconciliation, heartbeats, reconnects.

Promises:
- Every session: subscribe to ``state_changed`` first, then ``get_states``, reconcile, then
  publish live events, buffered meanwhile. Any entity version the projection already holds is
  skipped, so each change is published once: live or reconciled, never both.
- Events are published in HA's order with ``Nats-Msg-Id = ha.<entity>.<last_updated>`` (the
  same for a live and a reconciled publish of one version), pipelined with at most ``window``
  unacknowledged. The projection advances only when JetStream stored the change; a failed
  publish ends the session, and the next one's reconciliation publishes what was lost.
- A missed pong, a dead socket or a failed publish means reconnect, forever, with jittered
  exponential backoff. So does a backlog of more than ``max_backlog`` events (HA outrunning
  JetStream): memory stays bounded, and the next session's reconciliation publishes each
  entity's current state (the intermediate states of that flood are not published).
- ``auth_invalid`` is logged and audited once per streak, and retried only after
  ``auth_backoff``: never a hot loop.
- Other bus events: only the types the engine's rules listen to, in the same order and
  pipeline (``ha_events``, ADR-0030).
- Home Assistant's start and shutdown: announced once per run (``lifecycle``, ADR-0032).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from nats.aio.client import Client
from pydantic import ValidationError

from ruby_gateway.ha_client import HaAuthInvalidError, HaConnection, HaDisconnectedError
from ruby_gateway.ha_events import HaEvents, HaEventsStatus
from ruby_gateway.lifecycle import HaLifecycle
from ruby_gateway.ordering import tell_change
from ruby_gateway.projection import Projected, Projection
from ruby_gateway.reconcile import diff
from ruby_natsx.audit import audit_record
from ruby_natsx.publish import MSG_ID, Publisher
from ruby_natsx.subjects import SubjectError, Subjects
from ruby_runtime.secret import Secret
from ruby_schemas.audit import AuditOutcome
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.ha import HaState, HaStateChangedEvent
from ruby_schemas.ha_events import StateChangedV1
from ruby_schemas.registry import encode

log = structlog.get_logger("ruby_gateway.bridge")


@dataclass(frozen=True)
class BridgeConfig:
    url: str
    token: Secret
    ping_interval: float = 10.0
    ping_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    auth_backoff: float = 60.0
    window: int = 256
    max_backlog: int = 10_000
    service: str = "gateway"


@dataclass
class BridgeStatus:
    connected: bool = False
    connected_since: datetime | None = None
    last_event_at: datetime | None = None
    events_published: int = 0
    reconciled_published: int = 0
    reconnects: int = 0
    sessions: int = 0
    projection_loaded: bool = False
    auth_failures: int = 0
    skipped_seen: int = 0
    backlog_overflows: int = 0
    ha_events: HaEventsStatus = field(default_factory=HaEventsStatus)


class _Received(NamedTuple):
    """A raw event from Home Assistant and when the gateway received it."""

    raw: dict[str, object]
    at: datetime


@dataclass
class _Pending:
    entity_id: str
    projected: Projected | None  # None: the entity was removed
    ack: asyncio.Future[int] = field(repr=False)


class SessionEndedError(Exception):
    """The session cannot go on (a failed publish, a missed pong): reconnect."""


class Bridge:
    """Runs until ``stop()``; ``status`` is live."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        config: BridgeConfig,
        projection_bucket: str,
        projection: Projection | None = None,
        on_change: Callable[[str, datetime], None] | None = None,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self.config = config
        self._kv_prefix = f"$KV.{projection_bucket}."
        self._publisher = Publisher(nc)
        self.projection = projection if projection is not None else Projection()
        self.status = BridgeStatus(projection_loaded=projection is not None)
        self.ha_events = HaEvents(nc, subjects, self._publisher, self.status.ha_events,
                                  service=config.service, window=config.window)  # fmt: skip
        self.lifecycle = HaLifecycle(nc, subjects, self._publisher, service=config.service)
        self._pending: deque[_Pending] = deque()
        self._settling = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._audited_auth = False
        self._connection: HaConnection | None = None
        self._on_change = on_change
        """Told each entity's ``last_changed`` as soon as HA reports it (before publishing)."""

    def connection(self) -> HaConnection | None:
        """The live HA connection, or None while disconnected (for the command executor)."""
        return self._connection if self.status.connected else None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = self.config.backoff_initial
        await self._publisher.start()
        await self.ha_events.start()
        await self.lifecycle.load()
        try:
            while not self._stopping.is_set():
                try:
                    conn = await HaConnection.open(self.config.url, self.config.token)
                except HaAuthInvalidError as exc:
                    await self._auth_refused(str(exc))
                    await self._sleep(self.config.auth_backoff)
                    continue
                except HaDisconnectedError as exc:
                    log.warning("home assistant unreachable", error=str(exc), retry_in=backoff)
                    await self.lifecycle.unreachable()
                    await self._sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311
                    backoff = min(backoff * 2, self.config.backoff_max)
                    continue
                backoff = self.config.backoff_initial
                self._audited_auth = False
                try:
                    await self._session(conn)
                except (HaDisconnectedError, SessionEndedError) as exc:
                    log.warning("home assistant session ended", error=str(exc))
                finally:
                    self.status.connected = False
                    self._connection = None
                    self.lifecycle.session_ended(conn)
                    await conn.close()
                    await self._settle_all(fail_ok=True)
                if not self._stopping.is_set():
                    self.status.reconnects += 1
        finally:
            await self.ha_events.close()
            await self._publisher.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _session(self, conn: HaConnection) -> None:
        events: asyncio.Queue[_Received] = asyncio.Queue(self.config.max_backlog)
        overflow = asyncio.Event()

        def receive(raw: dict[str, object]) -> None:
            if self._on_change is not None:  # at once: _live may be waiting on JetStream
                tell_change(raw, self._on_change)
            try:
                events.put_nowait(_Received(raw, datetime.now(UTC)))
            except asyncio.QueueFull:  # HA outruns JetStream: stop queueing, reconcile later
                overflow.set()

        reader = asyncio.create_task(conn.run(), name="ha-reader")
        try:
            await conn.subscribe(receive, "state_changed")
            entities, boot = await self._snapshot(conn)
            self._connection = conn
            self.status.connected = True
            self.status.connected_since = datetime.now(UTC)
            self.status.sessions += 1
            log.info("home assistant connected", entities=entities, version=conn.ha_version)
            pump: asyncio.Task[Any] = asyncio.create_task(self._live(events), name="ha-live")
            heart: asyncio.Task[Any] = asyncio.create_task(self._heartbeat(conn), name="ha-beat")
            stop: asyncio.Task[Any] = asyncio.create_task(self._stopping.wait(), name="stop")
            full: asyncio.Task[Any] = asyncio.create_task(overflow.wait(), name="overflow")
            bus = asyncio.create_task(self.ha_events.follow(conn, receive), name="ha-bus-events")
            life = asyncio.create_task(self.lifecycle.follow(conn, boot), name="ha-lifecycle")
            done, _ = await asyncio.wait(
                {reader, pump, heart, stop, full, bus, life}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (pump, heart, stop, full, bus, life):
                task.cancel()
            await asyncio.gather(pump, heart, stop, full, bus, life, return_exceptions=True)
            for task in done:
                if task not in (stop, full) and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
            if full in done:
                self.status.backlog_overflows += 1
                raise SessionEndedError(
                    f"more than {self.config.max_backlog} events waiting: reconnecting, so that "
                    "reconciliation publishes the current states"
                )
            if reader in done:
                raise HaDisconnectedError("home assistant closed the connection")
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _snapshot(self, conn: HaConnection) -> tuple[int, datetime | None]:
        """get_states, then reconcile; its lists die here, not with the session (~29 MB for
        10,000 entities, measured by bench/gateway.py). Returns how many states there are,
        and the earliest ``last_changed`` among them (the run's mark, `ruby_gateway.lifecycle`)."""
        raw_states = await conn.call("get_states", within=60)
        states = [HaState.model_validate(s) for s in raw_states or []]  # type: ignore[union-attr]
        await self._reconcile(states)
        return len(states), min((s.last_changed for s in states), default=None)

    async def _reconcile(self, states: list[HaState]) -> None:
        if self._on_change is not None:
            for state in states:
                self._on_change(state.entity_id, state.last_changed)
        changes = diff(self.projection, states)
        for state in changes.changed:
            await self._emit(state.entity_id, self._changed(state, reconciled=True))
        for entity_id in changes.removed:
            await self._emit(entity_id, self._removed(entity_id))
        await self._settle_all()
        self.status.projection_loaded = True
        self.status.reconciled_published += len(changes.changed) + len(changes.removed)
        if changes.changed or changes.removed:
            log.info("reconciled", changed=len(changes.changed), removed=len(changes.removed))

    async def _live(self, events: asyncio.Queue[_Received]) -> None:
        while True:
            raw, received = await events.get()
            if raw.get("event_type") != "state_changed":  # a bus event a rule listens to
                await self.ha_events.forward(raw)
                continue
            try:
                event = HaStateChangedEvent.model_validate(raw)
            except ValidationError as exc:
                log.exception("unreadable state_changed event skipped", error=str(exc))
                continue
            new = event.data.new_state
            if new is not None and self.projection.has_seen(new):
                self.status.skipped_seen += 1  # already published by reconciliation
                continue
            entity_id = event.data.entity_id
            if new is None:
                await self._emit(entity_id, self._removed(entity_id, event), received)
            else:
                await self._emit(entity_id, self._changed(new, event=event), received)
            self.status.last_event_at = datetime.now(UTC)
            if events.empty():  # a lull: let the projection catch up with what was stored
                await self._settle_all()

    def _changed(
        self, state: HaState, *, reconciled: bool = False, event: HaStateChangedEvent | None = None
    ) -> tuple[StateChangedV1, str, Projected]:
        known = self.projection.get(state.entity_id)
        payload = StateChangedV1(
            entity_id=state.entity_id,
            old_state=(
                event.data.old_state.to_entity_state()
                if event is not None and event.data.old_state is not None
                else known.entity_state()
                if known
                else None
            ),
            new_state=state.to_entity_state(),
            context_id=state.context.id,
            context_parent_id=state.context.parent_id,
            reconciled=reconciled,
        )
        return (
            payload,
            f"ha.{state.entity_id}.{state.last_updated.isoformat()}",
            Projected.of(state),
        )

    def _removed(
        self, entity_id: str, event: HaStateChangedEvent | None = None
    ) -> tuple[StateChangedV1, str, None]:
        known = self.projection.get(entity_id)
        payload = StateChangedV1(
            entity_id=entity_id,
            old_state=known.entity_state() if known else None,
            new_state=None,
            context_id=event.context.id if event else new_id(),
            context_parent_id=event.context.parent_id if event else None,
            reconciled=event is None,
        )
        version = known.last_updated.isoformat() if known else "unknown"
        return payload, f"ha.{entity_id}.removed.{version}", None

    async def _emit(
        self,
        entity_id: str,
        change: tuple[StateChangedV1, str, Projected | None],
        received: datetime | None = None,
    ) -> None:
        """Publish one change; its envelope's time is when HA's event was ``received`` (the
        engine tells a backlog by it), or now for a reconciled one."""
        payload, message_id, projected = change
        try:
            subject = self._subjects.ha_state(entity_id)
        except SubjectError as exc:
            log.exception(
                "entity id cannot be a subject; skipped", entity_id=entity_id, error=str(exc)
            )
            return
        envelope = make_envelope(
            payload, source=f"ruby/{self.config.service}", message_id=message_id, time=received
        )
        ack = await self._publisher.send(subject, encode(envelope), {MSG_ID: message_id})
        self._pending.append(_Pending(entity_id, projected, ack))
        while len(self._pending) > self.config.window:
            await self._settle_one()

    async def _settle_one(self, *, fail_ok: bool = False) -> None:
        # One settler at a time (_live and the heartbeat both settle): two interleaved ones
        # would each pop a change and could project the older one last.
        async with self._settling:
            if self._pending:
                await self._settle_next(fail_ok=fail_ok)

    async def _settle_next(self, *, fail_ok: bool) -> None:
        pending = self._pending.popleft()
        try:
            await pending.ack
        except Exception as exc:
            if fail_ok:  # the session is over; reconciliation will publish it again
                return
            raise SessionEndedError(f"publishing {pending.entity_id} failed: {exc}") from exc
        if pending.projected is None:
            self.projection.remove(pending.entity_id)
            await self._nc.publish(
                self._kv_prefix + pending.entity_id, b"", headers={"KV-Operation": "DEL"}
            )
        else:
            self.projection.put(pending.entity_id, pending.projected)
            await self._nc.publish(self._kv_prefix + pending.entity_id, pending.projected.to_json())
        self.status.events_published += 1

    async def _settle_all(self, *, fail_ok: bool = False) -> None:
        while self._pending:
            await self._settle_one(fail_ok=fail_ok)

    async def _heartbeat(self, conn: HaConnection) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval)
            try:
                await conn.ping(self.config.ping_timeout)
            except HaDisconnectedError as exc:
                raise SessionEndedError(f"no pong within {self.config.ping_timeout}s") from exc
            await self._settle_all()

    async def _auth_refused(self, message: str) -> None:
        self.status.auth_failures += 1
        log.error(
            "home assistant refused the access token; retrying later",
            error=message,
            retry_in=self.config.auth_backoff,
        )
        if self._audited_auth:
            return
        self._audited_auth = True
        record = audit_record(
            self._subjects,
            service=self.config.service,
            action="auth.refused",
            target=self.config.url,
            outcome=AuditOutcome.DENIED,
            reason=f"home assistant auth_invalid: {message}",
        )
        with contextlib.suppress(Exception):  # audit is best effort while HA refuses us
            await self._publisher.publish([record])
