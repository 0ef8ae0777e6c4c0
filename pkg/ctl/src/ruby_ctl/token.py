"""``rubyctl token create | ls | revoke``: the API tokens Traefik's edge and the gateway check.

A token is printed once, when it is created, and never stored: the api-tokens bucket keeps its
name, scope, expiry and SHA-256 digest (ADR-0020). Creating and revoking are audited
(``token.created``, ``token.revoked``, by the operator), without the token.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.aio.client import Client
from nats.js.kv import KeyValue
from pydantic import JsonValue

from ruby_ctl import args as cli_args
from ruby_ctl.operator import run_connected
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.kvread import read_bucket
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import API_TOKENS, topology
from ruby_runtime.api_tokens import digest, new_token
from ruby_schemas.api_tokens import (
    NAME_PATTERN,
    ApiTokenRecord,
    ApiTokenRecordError,
    Scope,
    read_token_record,
)

DEFAULT_TTL: Final = timedelta(days=90)


def ttl(raw: str) -> timedelta | None:
    """``90d``, ``12h``... or ``never``."""
    if raw.strip().lower() == "never":
        return None
    return cli_args.duration(raw)


def name(raw: str) -> str:
    if not re.fullmatch(NAME_PATTERN, raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a token name: up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return raw


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "token",
        help="create, list or revoke API tokens",
        description="API tokens open the HTTP and WebSocket API behind Traefik. A token is "
        "printed once, when it is created; only its digest is stored. Scopes: read (every "
        "GET and the event stream), control (read, and call services, fire events, "
        "webhooks), admin (control, and dead-letter replay and purge). Creating and revoking "
        "are audited.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = cli_args.add_verb(
        verbs,
        "create",
        "create a token and print it once",
        "Create a token called NAME with a scope and a lifetime, and print it on stdout, "
        "once: store it where the client that uses it can read it. NAME must not be an "
        "active token's already.",
        "  rubyctl token create dashboard --scope read\n"
        "  rubyctl token create phone --scope control --ttl 365d\n"
        "  rubyctl token create ops --scope admin --ttl 12h",
    )
    create.add_argument("name", type=name, help="who or what the token is for")
    create.add_argument(
        "--scope", required=True, type=Scope, choices=list(Scope), help="what it may do"
    )
    create.add_argument(
        "--ttl",
        type=ttl,
        default=DEFAULT_TTL,
        help="how long it opens the API: 90s, 10m, 2h, 30d, or never (default 90d)",
    )
    create.set_defaults(handler=lambda a: _run(a, _create))

    ls = verbs.add_parser("ls", help="list tokens: name, id, scope, created, expires, state")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(handler=lambda a: _run(a, _ls))

    revoke = verbs.add_parser("revoke", help="revoke a token: refused from the next request")
    revoke.add_argument("name", type=name, help="the token's name")
    revoke.set_defaults(handler=lambda a: _run(a, _revoke))
    for sub in (create, ls, revoke):
        cli_args.add_prefix(sub)


async def _bucket(nc: Client, prefix: str) -> tuple[KeyValue, str]:
    bucket = topology(Subjects(prefix)).bucket(API_TOKENS).bucket
    return await nc.jetstream().key_value(bucket), bucket


async def _records(nc: Client, bucket: str) -> list[ApiTokenRecord]:
    """Every token record, oldest first; an unreadable one is named on stderr and skipped."""
    found = []
    for key, raw in (await read_bucket(nc, bucket)).items():
        try:
            found.append(read_token_record(raw))
        except ApiTokenRecordError as exc:
            print(f"rubyctl token: key {key}: {exc}", file=sys.stderr)
    return sorted(found, key=lambda r: r.created)


def _active(records: list[ApiTokenRecord], token_name: str, now: datetime) -> ApiTokenRecord | None:
    for record in records:
        if record.name == token_name and record.refusal(now) is None:
            return record
    return None


async def _audit(nc: Client, prefix: str, action: str, record: ApiTokenRecord) -> None:
    details: dict[str, JsonValue] = {"id": record.id, "scope": record.scope.value}
    if record.expires is not None:
        details["expires"] = record.expires.isoformat()
    await publish_records(
        nc,
        [
            audit_record(
                Subjects(prefix),
                service=OPERATOR,
                action=action,
                target=f"api_token:{record.name}",
                details=details,
            )
        ],
    )


async def _create(nc: Client, args: argparse.Namespace) -> int:
    kv, bucket = await _bucket(nc, args.prefix)
    now = datetime.now(UTC)
    if _active(await _records(nc, bucket), args.name, now) is not None:
        print(
            f"rubyctl token: {args.name!r} is an active token already; revoke it first, or "
            "choose another name",
            file=sys.stderr,
        )
        return 1
    token_id, token = new_token()
    record = ApiTokenRecord(
        id=token_id,
        name=args.name,
        scope=args.scope,
        digest=digest(token.reveal()),
        created=now,
        expires=now + args.ttl if args.ttl is not None else None,
    )
    await kv.create(token_id, record.model_dump_json().encode())
    await _audit(nc, args.prefix, "token.created", record)
    until = record.expires.isoformat(timespec="seconds") if record.expires else "never expires"
    print(
        f"rubyctl token: created {args.name} ({args.scope.value}, "
        f"{'until ' + until if record.expires else until}); it is shown this once:",
        file=sys.stderr,
    )
    print(token.reveal())
    return 0


async def _ls(nc: Client, args: argparse.Namespace) -> int:
    _, bucket = await _bucket(nc, args.prefix)
    now = datetime.now(UTC)
    records = await _records(nc, bucket)
    for record in records:
        state = record.refusal(now) or "active"
        if args.json:
            shown = record.model_dump(mode="json", exclude={"digest"})
            print(json.dumps({**shown, "state": state}))
            continue
        expires = record.expires.isoformat(timespec="seconds") if record.expires else "never"
        created = record.created.isoformat(timespec="seconds")
        print(
            f"{record.name:24} {record.id}  {record.scope.value:7}  created {created}  "
            f"expires {expires}  {state}"
        )
    if not records and not args.json:
        print("no tokens: create one with `rubyctl token create NAME --scope read`")
    return 0


async def _revoke(nc: Client, args: argparse.Namespace) -> int:
    kv, bucket = await _bucket(nc, args.prefix)
    now = datetime.now(UTC)
    record = _active(await _records(nc, bucket), args.name, now)
    if record is None:
        print(f"rubyctl token: no active token is called {args.name!r}", file=sys.stderr)
        return 1
    revoked = record.model_copy(update={"revoked": now})
    await kv.put(record.id, revoked.model_dump_json().encode())
    await _audit(nc, args.prefix, "token.revoked", revoked)
    print(f"rubyctl token: revoked {args.name} ({record.id}); the API refuses it from now on")
    return 0


Verb = Callable[[Client, argparse.Namespace], Awaitable[int]]


def _run(args: argparse.Namespace, verb: Verb) -> int:
    return run_connected("token", None, lambda nc: verb(nc, args))
