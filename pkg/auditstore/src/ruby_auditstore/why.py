"""Why an entity is in its state: the chain of causes, followed back through the audit store.

The links (``rubyctl audit why`` prints them; the audit sink answers ``GET /audit/why``):

1. the entity's last change carries Home Assistant's context id (the gateway's projection);
2. the gateway's ``command.executed`` record with ``details.ha_context_id`` equal to it
   (Home Assistant stamps a service call's context on the changes it causes);
3. the engine's ``rule.fired`` record whose ``details.command_ids`` holds that command;
4. its ``details.trigger_event_id`` (else its correlation id, which for a state-change trigger
   is the same id): the state change that fired the rule, read from EVENTS (`Changes`);
5. that change's context id, and on from 2 while a command caused it.

Records written by an older engine may lack the trigger id or the rule version; the chain
then says so and stops. Read-only throughout. The store is read in a worker thread, so a
caller's event loop keeps running while SQLite searches.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Final, Protocol

from ruby_auditstore.store import AuditStore, StoredRecord
from ruby_schemas.audit_api import AuditChainV1, CommandLink, Link, RuleLink, StateLink, TriggerLink
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope
from ruby_schemas.ha_events import StateChangedV1

MAX_COMMANDS: Final = 20
"""How many commands back the chain is followed at most (a guard against a rule loop)."""
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]+")
NOT_RUBY: Final = (
    "not changed by Ruby Core: no command was executed with context {context} "
    "(a person, a device or Home Assistant itself changed it)"
)


class Changes(Protocol):
    """Finds a state change by its envelope id (``ruby_natsx.lookup.StateChanges``)."""

    async def find(
        self, event_id: str, entity_id: str, at: datetime | None
    ) -> Envelope[Payload]:  # pragma: no cover - a protocol
        """The envelope; ``LookupError`` when it is no longer there."""
        ...


def _detail(stored: StoredRecord, key: str) -> str | None:
    value = (stored.record.details or {}).get(key)
    return value if isinstance(value, str) and value else None


def find_command(store: AuditStore, context_id: str) -> CommandLink | None:
    """The newest ``command.executed`` record made with Home Assistant context ``context_id``."""
    for stored in store.query(
        action="command.executed",
        detail=("ha_context_id", context_id),
        newest_first=True,
        limit=1,
    ):
        r = stored.record
        return CommandLink(
            command_id=_detail(stored, "command_id") or r.causation_id or "?",
            service=r.target,
            executed_at=r.occurred_at,
            actor=r.actor,
            correlation_id=r.correlation_id,
            record_id=r.record_id,
            seq=stored.seq,
        )
    return None


def find_rule(store: AuditStore, command_id: str) -> RuleLink | None:
    """The newest ``rule.fired`` record that lists ``command_id`` among its commands."""
    for stored in store.query(
        action="rule.fired", detail=("command_ids", command_id), newest_first=True, limit=1
    ):
        r = stored.record
        trigger = _detail(stored, "trigger_event_id")
        if trigger is None and r.correlation_id.startswith("ha."):
            trigger = r.correlation_id  # a state change starts its run: its id correlates it
        return RuleLink(
            rule_id=r.target.removeprefix("rule:"),
            rule_version=_detail(stored, "rule_version"),
            fired_at=r.occurred_at,
            trigger_event_id=trigger,
            run_id=_detail(stored, "run_id"),
            correlation_id=r.correlation_id,
            record_id=r.record_id,
            seq=stored.seq,
        )
    return None


def state_event(event_id: str) -> tuple[str, datetime | None] | None:
    """The entity and time a state change's id names (``ha.<entity_id>.<last_updated>``)."""
    if not event_id.startswith("ha."):
        return None
    parts = event_id.split(".", 3)
    if len(parts) != 4 or not all(_TOKEN.fullmatch(part) for part in parts[1:3]):
        return None
    entity_id = f"{parts[1]}.{parts[2]}"
    try:
        at = datetime.fromisoformat(parts[3].removeprefix("removed."))
    except ValueError:
        return entity_id, None
    return entity_id, at if at.tzinfo is not None else None


async def follow(store: AuditStore, changes: Changes | None, start: StateLink) -> AuditChainV1:
    """Follow the causes of ``start`` back as far as the records go.

    ``changes`` None: EVENTS cannot be read, and the chain stops at the first rule's trigger.
    The store must allow use from another thread (a read-only `AuditStore` does).
    """
    links: list[Link] = [start]
    context = start.context_id
    seen: set[str] = set()
    for _ in range(MAX_COMMANDS):
        command = None if context is None else await asyncio.to_thread(find_command, store, context)
        if command is None:
            end = NOT_RUBY.format(context=context) if len(links) == 1 else None
            return _chain(links, end)
        if command.command_id in seen:
            return _missing(links, f"command {command.command_id} again (a loop)")
        seen.add(command.command_id)
        links.append(command)
        rule = await asyncio.to_thread(find_rule, store, command.command_id)
        if rule is None:
            return _missing(
                links,
                f"no rule.fired record lists command {command.command_id}: no rule sent it, "
                "or the engine's record has not reached the store yet",
            )
        links.append(rule)
        if rule.trigger_event_id is None:
            return _missing(
                links,
                "the rule.fired record does not name its trigger event "
                "(written by an older engine)",
            )
        named = state_event(rule.trigger_event_id)
        if named is None:
            timed = rule.trigger_event_id.startswith("at.")
            links.append(
                TriggerLink(kind="time" if timed else "event", event_id=rule.trigger_event_id)
            )
            return _chain(links)
        entity_id, at = named
        if changes is None:
            unread = "EVENTS not read: NATS unreachable"
            links.append(_noted(entity_id, at, rule.trigger_event_id, unread))
            return _missing(links, "the triggering state change was not read (NATS unreachable)")
        try:
            envelope = await changes.find(rule.trigger_event_id, entity_id, at)
        except LookupError:
            links.append(_noted(entity_id, at, rule.trigger_event_id, "not in EVENTS any more"))
            return _missing(
                links,
                f"event {rule.trigger_event_id} is no longer in EVENTS (older than the stream "
                "keeps): its context cannot be followed",
            )
        change = _change(envelope, entity_id, at)
        links.append(change)
        context = change.context_id
    return _missing(links, f"followed {MAX_COMMANDS} commands back; stopped there")


def _chain(links: list[Link], end: str | None = None, *, complete: bool = True) -> AuditChainV1:
    first = links[0]
    assert isinstance(first, StateLink)  # noqa: S101 - a chain starts with the entity
    return AuditChainV1(
        entity_id=first.entity_id,
        context_id=first.context_id,
        state=first.state,
        caused_by_ruby_core=any(isinstance(link, CommandLink) for link in links),
        complete=complete,
        end=end,
        chain=tuple(links),
    )


def _missing(links: list[Link], why: str) -> AuditChainV1:
    return _chain(links, f"chain ends: {why}", complete=False)


def _noted(entity_id: str, at: datetime | None, event_id: str, note: str) -> StateLink:
    return StateLink(entity_id=entity_id, changed_at=at, event_id=event_id, note=note)


def _change(envelope: Envelope[Payload], entity_id: str, at: datetime | None) -> StateLink:
    data = envelope.data
    if not isinstance(data, StateChangedV1):
        return _noted(entity_id, at, envelope.id, f"a {envelope.type}, not a state change")
    new, old = data.new_state, data.old_state
    return StateLink(
        entity_id=data.entity_id,
        context_id=data.context_id,
        state=None if new is None else new.state,
        old_state=None if old is None else old.state,
        changed_at=envelope.time if new is None else new.last_changed,
        event_id=envelope.id,
        reconciled=data.reconciled,
    )
