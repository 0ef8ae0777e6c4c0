"""The Home Assistant event types the rules listen to, kept where the gateway follows them.

The gateway subscribes on Home Assistant only to the bus event types some rule needs
(ADR-0030). `wanted_event_types` finds them: every `event` trigger of a loaded rule, at any
depth (its own triggers, a `wait_for` anywhere in its actions), and of the rule versions that
paused runs still finish with. `EventTypesRecord` keeps that set in the status bucket, key
``engine.event_types``, as an ``engine.ha_event_types.v1`` envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.topology import EVENT_TYPES_KEY
from ruby_rules.engine import RuleEngine
from ruby_rules.model import Program
from ruby_schemas.envelope import make_envelope
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha_events import LIFECYCLE_EVENT_TYPES
from ruby_schemas.webhooks import WEBHOOK_EVENT_PREFIX

log = structlog.get_logger("ruby_engine.event_types")

RETRY = 2.0
"""Seconds between attempts to store a set that could not be stored."""


def event_types_of(programs: Iterable[Program]) -> frozenset[str]:
    """Every bus event type the triggers and waits of ``programs`` (compiled rules) listen to;
    not Home Assistant's start and shutdown, which the gateway announces unasked (ADR-0032),
    nor webhooks, which come from the API, not from Home Assistant (ADR-0037)."""
    lifecycle = set(LIFECYCLE_EVENT_TYPES.values())
    return frozenset(
        event
        for program in programs
        for event in program.event_types()
        if event not in lifecycle and not event.startswith(WEBHOOK_EVENT_PREFIX)
    )


def wanted_event_types(core: RuleEngine) -> frozenset[str]:
    """The event types the rules of ``core`` and its paused runs can react to."""
    programs = [rule.program for rule in core.rules.values()]
    programs += [record.compiled for record in core.timers.values() if record.kind == "run"]
    return event_types_of(programs)


class EventTypesRecord:
    """Writes the wanted event types to ``engine.event_types`` of the status bucket.

    `update` writes the set when it differs from the one stored last (always, the first time:
    a record left by an earlier process may be stale) and returns once JetStream stored it. If
    it cannot be stored, a task retries every `RETRY` seconds, always with the latest set,
    until one is; `close` ends it. One event loop; concurrent `update`s write in turn.
    """

    def __init__(self, publisher: Publisher, status_bucket: str, *, retry: float = RETRY):
        self._publisher = publisher
        self.subject = f"$KV.{status_bucket}.{EVENT_TYPES_KEY}"
        self._retry_every = retry
        self._wanted: frozenset[str] | None = None
        self.stored: frozenset[str] | None = None
        """The set stored last by this process (None before the first write)."""
        self._lock = asyncio.Lock()
        self._retrying: asyncio.Task[None] | None = None

    async def update(self, core: RuleEngine) -> None:
        """Store the event types ``core`` now needs, if they changed."""
        self._wanted = wanted_event_types(core)
        if await self._write():
            return
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(), name="event-types-retry")

    async def close(self) -> None:
        """Stop retrying."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying

    async def _retry(self) -> None:
        while True:
            await asyncio.sleep(self._retry_every)
            if await self._write():
                return

    async def _write(self) -> bool:
        async with self._lock:
            wanted = self._wanted
            if wanted is None or wanted == self.stored:
                return True
            payload = HaEventTypesV1(event_types=tuple(wanted))
            envelope = make_envelope(payload, source="ruby/engine")
            try:
                await self._publisher.publish([Outbound(self.subject, envelope)])
            except TransientError as exc:
                log.warning(
                    "event types for the gateway not stored; retrying",
                    error=str(exc),
                    retry_in=self._retry_every,
                )
                return False
            self.stored = wanted
            log.info("event types for the gateway stored", event_types=payload.event_types)
            return True
