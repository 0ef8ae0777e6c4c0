"""Commands on one entity run one at a time, in stream order, and a stale one is not run.

Two commands for the same entity, in flight in one gateway, could otherwise reach Home
Assistant out of order (each first claims its id in the ledger, a round trip of its own). And
a command that comes back late (held by a gateway that was killed, redelivered seconds later)
must not undo a newer one: a mirror would end on the stale value, for good.

- `TargetOrder.turn(entity_ids)` admits one command per entity at a time, first come first
  served (asyncio locks are fair; the runner starts handlers in delivery order, and the
  middleware takes its turn before any other await).
- `TargetOrder.superseded(entity_ids, created)` names a newer command this process already
  executed on every one of those entities; `executed` records one.
It is per process: a command held by a gateway that died is checked against Home Assistant's
state instead (`ruby_gateway.recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

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
        self._waiting: dict[str, int] = {}
        self._newest: dict[str, Newest] = {}

    @contextlib.asynccontextmanager
    async def turn(self, entity_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold every entity's turn (taken in sorted order: no deadlock) for the block."""
        names = sorted(set(entity_ids))
        queued: list[str] = []
        held: set[str] = set()
        try:
            for name in names:
                self._waiting[name] = self._waiting.get(name, 0) + 1
                queued.append(name)
                await self._locks.setdefault(name, asyncio.Lock()).acquire()
                held.add(name)
            yield
        finally:
            for name in reversed(queued):
                if name in held:
                    self._locks[name].release()
                self._waiting[name] -= 1
                if not self._waiting[name]:  # nobody else waits: forget the lock
                    del self._waiting[name], self._locks[name]

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


def in_turn(order: TargetOrder) -> Middleware:
    """Run a command's handler (and its ledger claim) only in its entities' turn."""

    def wrap(handler: Handler) -> Handler:
        async def ordered(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
            command = envelope.data
            if not isinstance(command, CallServiceV1) or not command.target.entity_id:
                return await handler(envelope, delivery)
            async with order.turn(command.target.entity_id):
                return await handler(envelope, delivery)

        return ordered

    return wrap
