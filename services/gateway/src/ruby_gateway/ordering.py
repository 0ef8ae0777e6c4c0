"""Commands on one entity run one at a time, in stream order, and a stale one is not run.

Two commands for the same entity, in flight in one gateway, could otherwise reach Home
Assistant out of order (each first claims its id in the ledger, a round trip of its own). And
a command that comes back late (held by a gateway that was killed, redelivered seconds later)
must not undo a newer one: a mirror would end on the stale value, for good.

- `TargetOrder.turn(entity_ids)` admits one command per entity at a time, first come first
  served (asyncio locks are fair; the runner starts handlers in delivery order, and the
  middleware takes its turn before any other await).
- `TargetOrder.superseded(entity_ids, created)` names a newer command this process already
  executed on every one of those entities; `executed` records one. `waiting_newer` tells of a
  newer command already waiting for the same turns: a command whose turn comes late (held
  behind one that waited out a NATS or Home Assistant outage) is stale if so.
- `TargetOrder.changed_since(entity_id, last_changed)`: when Home Assistant last reported a
  change of the entity's state, if later than ``last_changed`` (the bridge tells it every
  change as it receives it, `saw_change` through `tell_change`, before publishing it). A
  command started by a change that reached the engine late (``late_trigger``) is stale once
  its entity changed again.
It is per process: a command held by a gateway that died is checked against Home Assistant's
state instead (`ruby_gateway.recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ruby_natsx.handler import Delivery, Handler, Middleware, Outbound
from ruby_schemas.base import Payload
from ruby_schemas.commands import CallServiceV1
from ruby_schemas.envelope import Envelope


@dataclass(frozen=True, slots=True)
class Newest:
    """The newest command executed on an entity: its id and when the engine created it."""

    command_id: str
    created: datetime


class TargetOrder:
    """Per-entity turns and the newest executed command per entity. One event loop only."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, list[datetime]] = {}
        """Per entity, the creation times of the commands holding or waiting for its turn."""
        self._newest: dict[str, Newest] = {}
        self._changed: dict[str, datetime] = {}

    @contextlib.asynccontextmanager
    async def turn(self, entity_ids: Iterable[str], created: datetime) -> AsyncIterator[None]:
        """Hold every entity's turn (taken in sorted order: no deadlock) for the block, for a
        command created at ``created``."""
        names = sorted(set(entity_ids))
        held: list[str] = []
        for name in names:  # waiting for all of them from the start
            self._waiting.setdefault(name, []).append(created)
            self._locks.setdefault(name, asyncio.Lock())
        try:
            for name in names:
                await self._locks[name].acquire()
                held.append(name)
            yield
        finally:
            for name in reversed(held):
                self._locks[name].release()
            for name in names:
                self._waiting[name].remove(created)
                if not self._waiting[name]:  # nobody else waits: forget the lock
                    del self._waiting[name], self._locks[name]

    def waiting_newer(self, entity_ids: Sequence[str], created: datetime) -> datetime | None:
        """The creation time of a command created after ``created`` that already waits for
        the turn of every one of ``entity_ids``, if there is one on each (the oldest such)."""
        if not entity_ids:
            return None
        newest = [max(self._waiting.get(e, ()), default=None) for e in entity_ids]
        if all(n is not None and n > created for n in newest):
            return min(n for n in newest if n is not None)
        return None

    def superseded(self, entity_ids: Sequence[str], created: datetime) -> Newest | None:
        """A command created after ``created`` and executed on all of ``entity_ids``, if any."""
        if not entity_ids:
            return None
        newer = [self._newest.get(e) for e in entity_ids]
        if all(n is not None and n.created > created for n in newer):
            return newer[0]
        return None

    def executed(self, entity_ids: Iterable[str], command_id: str, created: datetime) -> None:
        """Record that ``command_id``, created at ``created``, was executed on these entities."""
        for entity_id in entity_ids:
            known = self._newest.get(entity_id)
            if known is None or known.created <= created:
                self._newest[entity_id] = Newest(command_id, created)

    def saw_change(self, entity_id: str, last_changed: datetime) -> None:
        """Home Assistant reported ``entity_id``'s state as changed at ``last_changed``."""
        known = self._changed.get(entity_id)
        if known is None or known < last_changed:
            self._changed[entity_id] = last_changed

    def changed_since(self, entity_id: str, last_changed: datetime) -> datetime | None:
        """When the entity's state last changed, if later than ``last_changed``."""
        known = self._changed.get(entity_id)
        return known if known is not None and known > last_changed else None


def in_turn(order: TargetOrder) -> Middleware:
    """Run a command's handler (and its ledger claim) only in its entities' turn."""

    def wrap(handler: Handler) -> Handler:
        async def ordered(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
            command = envelope.data
            if not isinstance(command, CallServiceV1) or not command.target.entity_id:
                return await handler(envelope, delivery)
            async with order.turn(command.target.entity_id, envelope.time):
                return await handler(envelope, delivery)

        return ordered

    return wrap


def tell_change(raw: dict[str, object], on_change: Callable[[str, datetime], None]) -> None:
    """Pass a raw ``state_changed`` event's entity and ``last_changed`` to ``on_change``, as
    it arrives; anything malformed is left to the validated path (`Bridge._live`)."""
    if raw.get("event_type") != "state_changed":
        return
    try:
        data: Any = raw["data"]
        changed = datetime.fromisoformat(data["new_state"]["last_changed"])
        entity_id = data["entity_id"]
    except (KeyError, TypeError, ValueError):
        return
    if isinstance(entity_id, str) and changed.tzinfo is not None:
        on_change(entity_id, changed)
