"""``rubyctl rules replay``: recorded events through the rules of a directory, sending nothing.

The history is read with an ephemeral consumer (no acks, in memory, deleted afterwards) from
a start time, up to the messages the stream held when reading began; what arrives meanwhile is
left for a later replay. A file with any error is left out whole, as the engine refuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from ruby_ctl.rules_live import run_as_operator
from ruby_ctl.rules_sim import Printer, Simulation, from_envelope, stamp
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, topology
from ruby_rules import load_dir
from ruby_rules.model import Rule
from ruby_schemas.errors import ContractError
from ruby_schemas.registry import decode

BATCH = 500
"""Messages per fetch."""
FETCH_TIMEOUT = 5.0
"""Seconds a fetch may wait for messages the consumer said were pending."""
PROGRESS_EVERY = 5000
"""Events between progress lines on stderr."""
IDLE_CONSUMER = 60.0
"""Seconds after which the server removes the consumer of a replay that died."""


def replay(args: argparse.Namespace) -> int:
    """Load the rules (no NATS needed to find their errors), then replay as the operator."""
    directory = args.dir
    if not directory.is_dir():
        print(f"rubyctl rules replay: {directory} is not a directory", file=sys.stderr)
        return 2
    loaded = load_dir(directory)
    refused = sorted({error.file for error in loaded.errors})
    for error in loaded.errors:
        print(f"rubyctl rules replay: {error}", file=sys.stderr)
    if refused:
        print(
            f"rubyctl rules replay: left out, as the engine refuses them: {', '.join(refused)}",
            file=sys.stderr,
        )
    rules = [rule for rule in loaded.rules if rule.file not in refused]
    if args.rule is not None:
        rules = [rule for rule in rules if rule.id == args.rule]
        if not rules:
            where = (
                "is in a refused file"
                if any(rule.id == args.rule for rule in loaded.rules)
                else f"is not defined in {directory}"
            )
            print(f"rubyctl rules replay: rule {args.rule!r} {where}", file=sys.stderr)
            return 1
    if not rules:
        print(f"rubyctl rules replay: no rules to replay in {directory}", file=sys.stderr)
        return 1

    async def go(args: argparse.Namespace, nc: Client) -> int:
        return await _replay(args, nc, rules)

    return run_as_operator(args, go)


async def _replay(args: argparse.Namespace, nc: Client, rules: Sequence[Rule]) -> int:
    subjects = Subjects(args.prefix)
    stream = topology(subjects).stream(EVENTS).name
    now = datetime.now(UTC)
    since = now - args.since
    show = Printer(json_lines=args.json, tz=args.tz, dated=True, ids=True)
    _note(
        args.json,
        f"replaying {stream} since {stamp(since, args.tz, date=True)} through "
        f"{len(rules)} rule(s) from {args.dir}; nothing is published.\n"
        "initial states: empty (a condition on an entity that has not changed since then "
        "sees no state)",
    )
    sim = Simulation(rules, start=since, tz=args.tz)
    history = History(nc.jetstream(), stream, subjects.ha_all, since)
    handled = skipped = undecodable = 0
    first: datetime | None = None
    try:
        total = await history.open()
        async for msg in history.messages():
            try:
                event = from_envelope(decode(msg.data))
            except ContractError:
                undecodable += 1
                continue
            if event is None:
                skipped += 1
                continue
            first = first or event.time
            for happening in sim.handle(event):
                if happening.what in ("call", "publish"):
                    show(happening)
            handled += 1
            if handled % PROGRESS_EVERY == 0:
                print(f"rubyctl rules replay: {handled:,} of {total:,} events", file=sys.stderr)
    except NatsTimeoutError:
        print(
            f"rubyctl rules replay: {stream} stopped delivering; replay incomplete", file=sys.stderr
        )
        return 1
    finally:
        await history.close()
    for happening in sim.advance(now):  # what the timers armed by then would have done by now
        if happening.what in ("call", "publish"):
            show(happening)

    span = "no events" if first is None else f"from {stamp(first, args.tz, date=True)}"
    notes = [f"{n} {what}" for n, what in ((undecodable, "undecodable"), (skipped, "skipped")) if n]
    show.summary(
        {
            "events": handled,
            "undecodable": undecodable,
            "skipped": skipped,
            "since": since.isoformat(),
            "until": now.isoformat(),
        },
        f"summary: {handled} event(s) replayed ({span}; timers fired up to now)"
        + (f"; {', '.join(notes)}" if notes else ""),
        sim.tally,
    )
    return 0


def _note(json_lines: bool, text: str) -> None:
    print(text, file=sys.stderr if json_lines else sys.stdout)


class History:
    """The messages of ``stream`` on ``subject`` from ``since`` to the end at `open`.

    One ephemeral pull consumer, no acks, memory storage; `close` deletes it (and the server
    drops it after `IDLE_CONSUMER` seconds if we never get to). One reader.
    """

    def __init__(self, js: JetStreamContext, stream: str, subject: str, since: datetime) -> None:
        self._js, self._stream, self._subject, self._since = js, stream, subject, since
        self._sub: JetStreamContext.PullSubscription | None = None
        self._name: str | None = None
        self._total = 0

    async def open(self) -> int:
        """Create the consumer; return how many messages it will deliver."""
        config = ConsumerConfig(
            description="rubyctl rules replay (ephemeral, read only)",
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=self._since,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=IDLE_CONSUMER,
            mem_storage=True,
            num_replicas=1,
        )
        self._sub = await self._js.pull_subscribe(self._subject, stream=self._stream, config=config)
        info = await self._sub.consumer_info()
        self._name, self._total = info.name, info.num_pending or 0
        return self._total

    async def messages(self) -> AsyncIterator[Msg]:
        """Yield the messages in stream order; stop after the last one pending at `open`."""
        assert self._sub is not None  # noqa: S101 - open() comes first
        remaining = self._total
        while remaining > 0:
            try:
                batch = await self._sub.fetch(min(BATCH, remaining), timeout=FETCH_TIMEOUT)
            except NatsTimeoutError:
                if (await self._sub.consumer_info()).num_pending == 0:
                    return  # messages expired or were deleted meanwhile
                raise
            for msg in batch:
                remaining -= 1
                yield msg

    async def close(self) -> None:
        """Unsubscribe and delete the consumer."""
        if self._sub is not None:
            await self._sub.unsubscribe()
        if self._name is not None:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(self._stream, self._name)
