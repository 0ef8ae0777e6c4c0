"""``rubyctl audit query | verify | why``: read the audit trail the audit sink keeps.

The store (``ruby_auditstore``) is opened read-only, so these commands run beside the sink.
``verify`` walks the hash chain and, unless ``--no-head``, compares the store with the head
the sink published (``audit_sink.head`` in the status bucket): a store whose last rows were
removed still chains, and only that head shows it. ``why`` lives in `ruby_ctl.audit_why`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ruby_auditstore import AuditStore, StoredRecord
from ruby_ctl import args as cli_args
from ruby_ctl import audit_why
from ruby_ctl.audit_read import StoreError, connect_nats, open_store, unreadable, when
from ruby_ctl.rules_live import display_zone
from ruby_natsx.status import read_audit_head
from ruby_natsx.subjects import Subjects
from ruby_schemas.status import AuditHeadRecord

WIDTH = cli_args.HELP_WIDTH
"""Where the help text of the verbs wraps."""
REASON_WIDTH = 40
"""Reasons longer than this are cut short in the table (``--json`` has them whole)."""


# --- arguments -----------------------------------------------------------------------------


def moment(raw: str) -> datetime:
    """A duration ago (``90s``, ``10m``, ``2h``, ``7d``) or an ISO time.

    A time without an offset is in ``RUBY_TIMEZONE`` (default the local zone).
    """
    try:
        return datetime.now(UTC) - cli_args.duration(raw)
    except argparse.ArgumentTypeError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is neither a duration (90s, 10m, 2h, 7d) nor an ISO time "
            "(2026-11-20, 2026-11-20T18:00, 2026-11-20T18:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        zone = display_zone()
        parsed = parsed.replace(tzinfo=zone) if zone is not None else parsed.astimezone()
    return parsed


def positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive whole number")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "audit",
        help="query the audit trail, verify its hash chain, explain why an entity changed",
        description=textwrap.fill(
            "The audit sink keeps every audit record in an append-only, hash-chained store. "
            "query and verify read that file; verify and why also read what the running "
            "installation published, as the operator. `rubyctl audit VERB --help` says more.",
            WIDTH,
        ),
        epilog="examples:\n"
        "  rubyctl audit query --since 2h --action 'rule.*'\n"
        "  rubyctl audit verify\n"
        "  rubyctl audit why light.hallway",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    query = cli_args.add_verb(
        verbs,
        "query",
        "list audit records, filtered",
        "List the audit records matching every filter given, oldest first: sequence, time, "
        "actor, action, target, outcome, reason and correlation id, or with --json one JSON "
        "object per line (the record with its seq, hash and stored_at). --action and --target "
        "match exactly, or as a prefix when they end with '*'. Times are shown in "
        "RUBY_TIMEZONE (default the local zone). Exit 1 if there is no store.",
        "  rubyctl audit query --since 2h\n"
        "  rubyctl audit query --action 'command.*' --target light.turn_on --limit 20\n"
        "  rubyctl audit query --correlation 0193a0c2-... --json\n"
        "  rubyctl audit query --actor service:engine --since 2026-11-20T18:00 "
        "--until 2026-11-20T19:00",
    )
    query.add_argument(
        "--since", type=moment, metavar="WHEN", help="from this long ago (2h, 7d) or this ISO time"
    )
    query.add_argument(
        "--until", type=moment, metavar="WHEN", help="before this ISO time (or this long ago)"
    )
    query.add_argument("--actor", help="who acted, e.g. service:gateway")
    query.add_argument("--action", help="e.g. command.executed, or rule.* for a prefix")
    query.add_argument("--target", help="e.g. rule:hallway_light_on, or rule:* for a prefix")
    query.add_argument("--correlation", metavar="ID", help="one automation run's correlation id")
    query.add_argument(
        "--limit", type=positive, metavar="N", help="only the N newest matches (still oldest first)"
    )
    query.add_argument("--json", action="store_true", help="one JSON object per line")
    query.set_defaults(handler=_query)

    verify = cli_args.add_verb(
        verbs,
        "verify",
        "check the audit store's hash chain and the head the sink published",
        "Walk the hash chain from the first record: an edited, deleted or reordered record "
        "breaks it at that record. Then compare the store with the chain head the audit sink "
        "published (status key audit_sink.head, read as the operator): a store that ends "
        "before that head, or holds another record there, lost its last records. Without a "
        "reachable installation only the file is checked, and a note on stderr says so; "
        "--no-head checks the file alone on purpose.\n\n"
        "Prints `ok: N records, head SEQ HASH` and exits 0, or `broken at record SEQ (ID): "
        "REASON` and exits 1.",
        "  rubyctl audit verify\n  rubyctl audit verify --db /backup/audit.db --no-head",
    )
    verify.add_argument(
        "--no-head", action="store_true", help="check the file alone; do not connect to NATS"
    )
    verify.set_defaults(handler=_verify)

    why = cli_args.add_verb(
        verbs,
        "why",
        "explain why an entity is in its current state: which command, rule and trigger",
        "Follow the audit trail back from ENTITY's current state: the Home Assistant context "
        "id of its last change (from the projection bucket, or --context) -> the command the "
        "gateway executed with that context -> the rule that fired it -> the state change "
        "that triggered the rule (read from EVENTS) -> and on, while that change was itself "
        "caused by a command. One line per link; --json prints the chain as one object.\n\n"
        "Exit 0 when the question is answered, including when no command caused the change "
        "(a person, a device or Home Assistant itself did: `not changed by Ruby Core`) and "
        "when a link is missing (the line says which, and the chain stops there). Exit 1 if "
        "the store is missing or the entity unknown, 2 if NATS is needed and unreachable. "
        "With --context only the triggering events need NATS; without NATS they are not "
        "looked up and the chain stops at the first rule.",
        "  rubyctl audit why light.hallway\n"
        "  rubyctl audit why light.hallway --context 01JD3K2YV9A7Q4M8N2B5C6D7E8 --json",
    )
    why.add_argument("entity", metavar="ENTITY", help="the entity id, e.g. light.hallway")
    why.add_argument(
        "--context", metavar="ID", help="start from this HA context id, not the current state"
    )
    why.add_argument("--json", action="store_true", help="the chain as one JSON object")
    why.set_defaults(handler=audit_why.why)

    for sub in (query, verify, why):
        sub.add_argument(
            "--db",
            type=Path,
            metavar="PATH",
            help="the audit store (env RUBY_AUDIT_DB; default <RUBY_STATE_DIR>/audit/audit.db)",
        )
    for sub in (verify, why):
        sub.add_argument(
            "--nats-url",
            help="connect anonymously to this NATS (a development server without auth); "
            "by default rubyctl connects as the operator identity, with the RUBY_* settings",
        )
        cli_args.add_prefix(sub)


# --- query ---------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> int:
    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"rubyctl audit query: {exc}", file=sys.stderr)
        return 1
    with store:
        try:
            found = list(_matching(args, store))
        except sqlite3.Error as exc:
            print(f"rubyctl audit query: {unreadable(store, exc)}", file=sys.stderr)
            return 1
    if args.json:
        for stored in found:
            print(json.dumps(as_json(stored), ensure_ascii=False))
        return 0
    _print_table(found)
    return 0


def _matching(args: argparse.Namespace, store: AuditStore) -> Iterator[StoredRecord]:
    records = store.query(
        since=args.since,
        until=args.until,
        actor=args.actor,
        action=args.action,
        target=args.target,
        correlation_id=args.correlation,
        limit=args.limit,
        newest_first=args.limit is not None,
    )
    return reversed(list(records)) if args.limit is not None else records


def as_json(stored: StoredRecord) -> dict[str, object]:
    """One stored record as ``query --json`` prints it."""
    return {
        "seq": stored.seq,
        "hash": stored.hash,
        "stored_at": stored.stored_at,
        **stored.record.model_dump(mode="json"),
    }


def _print_table(found: list[StoredRecord]) -> None:
    header = ("SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON", "CORRELATION")
    rows = [
        (
            str(s.seq),
            when(s.record.occurred_at),
            s.record.actor,
            s.record.action,
            s.record.target,
            s.record.outcome.value,
            _short(s.record.reason) or "-",
            s.record.correlation_id,
        )
        for s in found
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for r in (header, *rows):
        cells = [r[0].rjust(widths[0])] + [r[i].ljust(widths[i]) for i in range(1, len(widths))]
        print("  ".join([*cells, r[-1]]))
    print(f"{len(found)} record(s)")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 3] + "..."


# --- verify --------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"rubyctl audit verify: {exc}", file=sys.stderr)
        return 1
    # The published head is read before the file is walked: the sink publishes a head only
    # after storing its rows, so the store read afterwards holds at least those rows.
    head = None if args.no_head else asyncio.run(_published(args))
    with store:
        try:
            verified = store.verify()
            broken = verified.broken
            if broken is None and head is not None:
                broken = store.against_head(verified, head.seq, head.hash)
            problem = None if broken is None else str(broken)
        except sqlite3.Error as exc:
            print(f"rubyctl audit verify: {unreadable(store, exc)}", file=sys.stderr)
            return 1
    if problem is not None:
        print(f"broken at {problem}")
        return 1
    print(f"ok: {verified.count} records, head {verified.head_seq} {verified.head_hash[:16]}")
    if head is not None:
        print(
            f"the head the sink published matches (record {head.seq}, written {when(head.updated)})"
        )
    return 0


async def _published(args: argparse.Namespace) -> AuditHeadRecord | None:
    """The sink's published head, or None after saying on stderr why it was not compared."""
    alone = "verifying the file alone (removed last records would go unnoticed)"
    try:
        nc = await connect_nats(args)
    except ConnectionError as exc:
        print(f"rubyctl audit verify: {exc}; {alone}", file=sys.stderr)
        return None
    try:
        head = await read_audit_head(nc, Subjects(args.prefix))
    except ValueError as exc:
        print(f"rubyctl audit verify: {exc}; {alone}", file=sys.stderr)
        return None
    finally:
        await nc.drain()
    if head is None:
        print(f"rubyctl audit verify: the audit sink published no head; {alone}", file=sys.stderr)
    return head
