"""``rubyctl audit why ENTITY``: the chain of causes behind an entity's current state.

The entity's current state and context come from the projection bucket (or ``--context``);
`ruby_auditstore.why.follow` follows the links back through the store, reading triggering
state changes from EVENTS (`ruby_natsx.lookup.StateChanges`); `ruby_ctl.audit_chain` prints
them. Read-only throughout. The audit sink answers ``GET /audit/why`` with the same chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from pydantic import ValidationError

from ruby_auditstore import AuditStore
from ruby_auditstore.why import follow
from ruby_ctl.audit_chain import lines
from ruby_ctl.audit_read import StoreError, connect_nats, open_store, unreadable
from ruby_natsx.lookup import StateChanges
from ruby_natsx.subjects import SubjectError, Subjects, split_entity_id
from ruby_natsx.topology import PROJECTION, topology
from ruby_schemas.audit_api import StateLink
from ruby_schemas.projection import ProjectionEntry

# --- the entity's current state ------------------------------------------------------------


class UnknownEntityError(LookupError):
    """The projection holds no (readable) entry for the entity."""


async def current(nc: Client, prefix: str, entity_id: str) -> StateLink:
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
    return StateLink(
        entity_id=entity_id,
        context_id=projected.context_id,
        state=projected.state,
        changed_at=projected.last_changed,
    )


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
            start = StateLink(entity_id=args.entity, context_id=args.context)
        else:
            assert nc is not None  # noqa: S101 - without --context, no connection returned 2
            try:
                start = await current(nc, args.prefix, args.entity)
            except UnknownEntityError as exc:
                print(f"rubyctl audit why: {exc}", file=sys.stderr)
                return 1
        events = None if nc is None else StateChanges(nc, Subjects(args.prefix))
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
        print(chain.model_dump_json())
    else:
        print("\n".join(lines(chain)))
    return 0
