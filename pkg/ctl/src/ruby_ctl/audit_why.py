"""``rubyctl audit why ENTITY``: the chain of causes behind an entity's current state.

The links, each found in the audit store (or, for state changes, in EVENTS):

1. the entity's last change carries Home Assistant's context id (projection bucket);
2. the gateway's ``command.executed`` record with ``details.ha_context_id`` equal to it
   (Home Assistant stamps a service call's context on the changes it causes);
3. the engine's ``rule.fired`` record whose ``details.command_ids`` holds that command;
4. its ``details.trigger_event_id`` (else its correlation id, which for a state-change trigger
   is the same id): the state change that fired the rule, read from EVENTS;
5. that change's context id, and on from 2 while a command caused it.

Records written by an older engine may lack the trigger id or the rule version; the chain
then says so and stops. Read-only throughout. The links themselves: `ruby_ctl.audit_chain`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from pydantic import ValidationError

from ruby_auditstore import AuditStore, StoredRecord
from ruby_ctl.audit_chain import Chain, Change, Command, Link, Rule, Trigger
from ruby_ctl.audit_read import StoreError, connect_nats, open_store, unreadable
from ruby_ctl.rules_replay import History
from ruby_natsx.subjects import SubjectError, Subjects, split_entity_id
from ruby_natsx.topology import EVENTS, PROJECTION, topology
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.ha_events import StateChangedV1
from ruby_schemas.projection import ProjectionEntry
from ruby_schemas.registry import decode

MAX_COMMANDS = 20
"""How many commands back the chain is followed at most (a guard against a rule loop)."""
SEARCH_MARGIN = timedelta(hours=1)
"""How long before a change's own time its event is looked for in EVENTS (clock skew)."""
NOT_RUBY = (
    "not changed by Ruby Core: no command was executed with context {context} "
    "(a person, a device or Home Assistant itself changed it)"
)


# --- following them ------------------------------------------------------------------------


def _detail(stored: StoredRecord, key: str) -> str | None:
    value = (stored.record.details or {}).get(key)
    return value if isinstance(value, str) and value else None


def find_command(store: AuditStore, context_id: str) -> Command | None:
    """The newest ``command.executed`` record made with Home Assistant context ``context_id``."""
    for stored in store.query(
        action="command.executed",
        detail=("ha_context_id", context_id),
        newest_first=True,
        limit=1,
    ):
        r = stored.record
        return Command(
            command_id=_detail(stored, "command_id") or r.causation_id or "?",
            service=r.target,
            at=r.occurred_at,
            actor=r.actor,
            correlation_id=r.correlation_id,
            record_id=r.record_id,
            seq=stored.seq,
        )
    return None


def find_rule(store: AuditStore, command_id: str) -> Rule | None:
    """The newest ``rule.fired`` record that lists ``command_id`` among its commands."""
    for stored in store.query(
        action="rule.fired", detail=("command_ids", command_id), newest_first=True, limit=1
    ):
        r = stored.record
        trigger = _detail(stored, "trigger_event_id")
        if trigger is None and r.correlation_id.startswith("ha."):
            trigger = r.correlation_id  # a state change starts its run: its id correlates it
        return Rule(
            rule_id=r.target.removeprefix("rule:"),
            version=_detail(stored, "rule_version"),
            at=r.occurred_at,
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
    if len(parts) != 4:
        return None
    entity_id = f"{parts[1]}.{parts[2]}"
    try:
        split_entity_id(entity_id)
    except SubjectError:
        return None
    try:
        return entity_id, datetime.fromisoformat(parts[3].removeprefix("removed."))
    except ValueError:
        return entity_id, None


class Events:
    """Finds state changes in EVENTS by envelope id. One reader."""

    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self._js: JetStreamContext = nc.jetstream()
        self._subjects = subjects
        self._stream = topology(subjects).stream(EVENTS).name

    async def find(self, event_id: str, entity_id: str, at: datetime | None) -> Envelope[Payload]:
        """The envelope with id ``event_id`` on the entity's subject; ``LookupError`` if gone.

        The entity's last message first (a trigger is often the latest); else the subject's
        messages from a little before ``at``, in stream order.
        """
        subject = self._subjects.ha_state(entity_id)
        try:
            last = await self._js.get_last_msg(self._stream, subject)
        except NotFoundError:
            raise LookupError(event_id) from None
        found = _decoded(last.data, event_id)
        if found is not None:
            return found
        since = (at or datetime.fromtimestamp(0, UTC)) - SEARCH_MARGIN
        history = History(self._js, self._stream, subject, since)
        try:
            await history.open()
            async for msg in history.messages():
                found = _decoded(msg.data, event_id)
                if found is not None:
                    return found
        finally:
            await history.close()
        raise LookupError(event_id)


def _decoded(data: bytes | None, event_id: str) -> Envelope[Payload] | None:
    try:
        envelope = decode(data or b"")
    except ContractError:
        return None
    return envelope if envelope.id == event_id else None


async def follow(store: AuditStore, events: Events | None, start: Change) -> Chain:
    """Follow the causes of ``start`` back as far as the records go."""
    links: list[Link] = [start]
    context = start.context_id
    seen: set[str] = set()
    for _ in range(MAX_COMMANDS):
        command = None if context is None else find_command(store, context)
        if command is None:
            end = NOT_RUBY.format(context=context) if len(links) == 1 else None
            return Chain(tuple(links), end)
        if command.command_id in seen:
            return _missing(links, f"command {command.command_id} again (a loop)")
        seen.add(command.command_id)
        links.append(command)
        rule = find_rule(store, command.command_id)
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
            links.append(Trigger(rule.trigger_event_id))
            return Chain(tuple(links))
        entity_id, at = named
        partial = Change(entity_id, at=at, event_id=rule.trigger_event_id)
        if events is None:
            links.append(_noted(partial, "EVENTS not read: NATS unreachable"))
            return _missing(links, "the triggering state change was not read (NATS unreachable)")
        try:
            envelope = await events.find(rule.trigger_event_id, entity_id, at)
        except LookupError:
            links.append(_noted(partial, "not in EVENTS any more"))
            return _missing(
                links,
                f"event {rule.trigger_event_id} is no longer in EVENTS (older than the stream "
                "keeps): its context cannot be followed",
            )
        change = _change(envelope, partial)
        links.append(change)
        context = change.context_id
    return _missing(links, f"followed {MAX_COMMANDS} commands back; stopped there")


def _missing(links: list[Link], why: str) -> Chain:
    return Chain(tuple(links), f"chain ends: {why}", complete=False)


def _noted(change: Change, note: str) -> Change:
    return Change(change.entity_id, at=change.at, event_id=change.event_id, note=note)


def _change(envelope: Envelope[Payload], known: Change) -> Change:
    data = envelope.data
    if not isinstance(data, StateChangedV1):
        return _noted(known, f"a {envelope.type}, not a state change")
    new, old = data.new_state, data.old_state
    return Change(
        entity_id=data.entity_id,
        context_id=data.context_id,
        state=None if new is None else new.state,
        old_state=None if old is None else old.state,
        at=envelope.time if new is None else new.last_changed,
        event_id=envelope.id,
        reconciled=data.reconciled,
    )


# --- the entity's current state ------------------------------------------------------------


class UnknownEntityError(LookupError):
    """The projection holds no (readable) entry for the entity."""


async def current(nc: Client, prefix: str, entity_id: str) -> Change:
    """The entity's current state and context, from the projection bucket."""
    bucket = topology(Subjects(prefix)).bucket(PROJECTION).bucket
    try:
        kv = await nc.jetstream().key_value(bucket)
        entry = await kv.get(entity_id)
    except BucketNotFoundError:
        raise UnknownEntityError(f"no projection bucket {bucket}: has the gateway run?") from None
    except KeyNotFoundError:
        raise UnknownEntityError(
            f"the gateway's projection has no entity {entity_id} (not in Home Assistant, or "
            "not seen yet); pass --context ID to start from a context id"
        ) from None
    try:
        projected = ProjectionEntry.model_validate_json(entry.value or b"")
    except ValidationError as exc:
        raise UnknownEntityError(
            f"the projection entry of {entity_id} is unreadable: {exc}"
        ) from None
    return Change(entity_id, projected.context_id, projected.state, at=projected.last_changed)


# --- the command ---------------------------------------------------------------------------


def why(args: argparse.Namespace) -> int:
    entity_id: str = args.entity
    try:
        split_entity_id(entity_id)
    except SubjectError as exc:
        print(f"rubyctl audit why: {exc}", file=sys.stderr)
        return 2
    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"rubyctl audit why: {exc}", file=sys.stderr)
        return 1
    with store:
        try:
            return asyncio.run(_why(args, store))
        except sqlite3.Error as exc:
            print(f"rubyctl audit why: {unreadable(store, exc)}", file=sys.stderr)
            return 1


async def _why(args: argparse.Namespace, store: AuditStore) -> int:
    nc: Client | None
    try:
        nc = await connect_nats(args)
    except ConnectionError as exc:
        if args.context is None:
            print(
                f"rubyctl audit why: {exc}; the entity's context is read from the running "
                "installation: start it, or pass --context ID",
                file=sys.stderr,
            )
            return 2
        print(f"rubyctl audit why: {exc}; triggering events are not read", file=sys.stderr)
        nc = None
    try:
        if args.context is not None:
            start = Change(args.entity, args.context)
        else:
            assert nc is not None  # noqa: S101 - without --context, no connection returned 2
            try:
                start = await current(nc, args.prefix, args.entity)
            except UnknownEntityError as exc:
                print(f"rubyctl audit why: {exc}", file=sys.stderr)
                return 1
        events = None if nc is None else Events(nc, Subjects(args.prefix))
        try:
            chain = await follow(store, events, start)
        except NatsTimeoutError:
            print("rubyctl audit why: EVENTS stopped answering; try again", file=sys.stderr)
            return 2
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):  # the answer is out; a failed drain is moot
                await nc.drain()
    if args.json:
        print(json.dumps(chain.to_json(), ensure_ascii=False))
    else:
        print("\n".join(chain.lines()))
    return 0
