"""``rubyctl dlq ls | show | replay | purge``: inspect and repair dead letters.

Replays and purges are recorded in the audit stream. Purge asks for confirmation unless
``--yes``; without a terminal to ask on, it refuses rather than guess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from ruby_ctl import args as cli_args
from ruby_ctl.operator import run_connected
from ruby_natsx.dlq import DeadLetters, Filter, Stored
from ruby_natsx.subjects import Subjects
from ruby_schemas.errors import ContractError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dlq",
        help="list, show, replay or purge dead letters",
        description="Dead letters are messages a consumer gave up on, kept with their origin "
        "and reason. Replay puts one back on its original subject (with a new message id); "
        "purge deletes it. Both are audited.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    ls = verbs.add_parser("ls", help="list dead letters, oldest first")
    _add_filters(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(handler=lambda a: _run(a, _ls))

    show = verbs.add_parser("show", help="show one dead letter in full")
    show.add_argument("seq", type=int, help="its sequence in the DLQ stream (from ls)")
    show.add_argument("--json", action="store_true", help="the stored envelope as JSON")
    show.set_defaults(handler=lambda a: _run(a, _show))

    replay = verbs.add_parser("replay", help="republish dead letters to their original subjects")
    replay.add_argument("seq", type=int, nargs="*", help="DLQ sequences (default: all matching)")
    _add_filters(replay)
    replay.add_argument("--keep", action="store_true", help="keep them in the DLQ afterwards")
    replay.set_defaults(handler=lambda a: _run(a, _replay))

    purge = verbs.add_parser("purge", help="delete dead letters for good")
    purge.add_argument("seq", type=int, nargs="*", help="DLQ sequences (default: all matching)")
    _add_filters(purge)
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=lambda a: _run(a, _purge))

    for sub in (ls, show, replay, purge):
        sub.add_argument(
            "--nats-url",
            help="connect anonymously to this NATS (a development server without auth); "
            "by default rubyctl connects as the operator identity, with the RUBY_* settings",
        )
        cli_args.add_prefix(sub)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", help="only from this stream (e.g. RUBY_COMMANDS)")
    parser.add_argument("--consumer", help="only given up on by this consumer (e.g. gateway)")
    parser.add_argument("--subject", help="only with an original subject matching this glob")
    parser.add_argument(
        "--older-than", type=cli_args.duration, help="last failed at least this long ago"
    )
    parser.add_argument(
        "--newer-than", type=cli_args.duration, help="last failed at most this long ago"
    )


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(
        stream=args.stream,
        consumer=args.consumer,
        subject=args.subject,
        older_than=args.older_than,
        newer_than=args.newer_than,
    )


Verb = Callable[[argparse.Namespace, DeadLetters], Awaitable[int]]


def _run(args: argparse.Namespace, verb: Verb) -> int:
    async def body(nc: Client) -> int:
        dead_letters = DeadLetters(nc, Subjects(args.prefix))
        try:
            return await verb(args, dead_letters)
        finally:
            await dead_letters.close()

    return run_connected("dlq", args.nats_url, body)


async def _get(dlq: DeadLetters, seq: int) -> Stored | None:
    """The dead letter at ``seq``, or None (and why, on stderr) if there is none to act on."""
    try:
        return await dlq.get(seq)
    except NotFoundError:
        print(f"rubyctl dlq: no dead letter with sequence {seq}", file=sys.stderr)
    except (ContractError, TypeError) as exc:  # forged, or not ours: never shown or replayed
        print(f"rubyctl dlq: DLQ message {seq} is not a valid dead letter: {exc}", file=sys.stderr)
    return None


async def _selected(args: argparse.Namespace, dlq: DeadLetters) -> list[Stored]:
    if args.seq:
        chosen = [stored for seq in args.seq if (stored := await _get(dlq, seq)) is not None]
        now = datetime.now(UTC)
        return [s for s in chosen if _filter(args).matches(s.letter, now)]
    return [stored async for stored in dlq.list(_filter(args))]


async def _ls(args: argparse.Namespace, dlq: DeadLetters) -> int:
    now = datetime.now(UTC)
    count = 0
    if not args.json:
        print(f"{'SEQ':>6}  {'AGE':>6}  {'STREAM/CONSUMER':<28} {'N':>2}  {'REASON':<16} SUBJECT")
    async for stored in dlq.list(_filter(args)):
        count += 1
        letter = stored.letter
        if args.json:
            record = {"seq": stored.seq, **json.loads(letter.model_dump_json())}
            print(json.dumps(record))
            continue
        origin = f"{letter.stream}/{letter.consumer}"
        print(
            f"{stored.seq:>6}  {_age(now - letter.last_failed_at):>6}  {origin:<28} "
            f"{letter.delivery_count:>2}  {letter.reason:<16} {letter.original_subject}"
        )
    if not args.json:
        print(f"{count} dead letter(s)")
    return 0


async def _show(args: argparse.Namespace, dlq: DeadLetters) -> int:
    stored = await _get(dlq, args.seq)
    if stored is None:
        return 1
    if args.json:
        print(stored.envelope.model_dump_json(indent=2))
        return 0
    letter = stored.letter
    try:
        payload = letter.original_payload.decode("utf-8")
    except UnicodeDecodeError:
        payload = f"(not UTF-8, {len(letter.original_payload)} bytes; see --json for base64)"
    for name, value in [
        ("DLQ sequence", stored.seq),
        ("original subject", letter.original_subject),
        ("stream / sequence", f"{letter.stream} / {letter.stream_sequence}"),
        ("consumer", letter.consumer),
        ("deliveries", letter.delivery_count),
        ("reason", letter.reason),
        ("error", letter.error),
        ("first failed", letter.first_failed_at.isoformat()),
        ("last failed", letter.last_failed_at.isoformat()),
        ("correlation id", stored.envelope.correlation_id),
        ("headers", json.dumps(letter.headers)),
        ("payload", payload),
    ]:
        print(f"{name + ':':<19} {value}")
    return 0


async def _replay(args: argparse.Namespace, dlq: DeadLetters) -> int:
    chosen = await _selected(args, dlq)
    for stored in chosen:
        new_seq = await dlq.replay(stored, keep=args.keep)
        print(
            f"replayed DLQ {stored.seq} to {stored.letter.original_subject} "
            f"(stream sequence {new_seq})"
        )
    print(f"{len(chosen)} dead letter(s) replayed")
    return 0 if chosen or not args.seq else 1


async def _purge(args: argparse.Namespace, dlq: DeadLetters) -> int:
    chosen = await _selected(args, dlq)
    if not chosen:
        print("no dead letters match; nothing purged")
        return 0 if not args.seq else 1
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                f"rubyctl dlq: refusing to purge {len(chosen)} dead letter(s) without "
                "confirmation; pass --yes",
                file=sys.stderr,
            )
            return 1
        prompt = f"Purge {len(chosen)} dead letter(s) for good? [y/N] "
        answer = await asyncio.to_thread(input, prompt)
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing purged")
            return 1
    for stored in chosen:
        await dlq.purge(stored)
    print(f"{len(chosen)} dead letter(s) purged")
    return 0


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
