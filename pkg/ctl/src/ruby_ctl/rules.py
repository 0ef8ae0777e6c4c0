"""``rubyctl rules check | test | replay | status | trace | import-ha``: rules before, during
and after.

``check``, ``test`` and ``import-ha`` (`ruby_ctl.rules_import`) read files only (no NATS);
``replay`` reads the EVENTS history as the operator and sends nothing; ``status`` and
``trace`` read what the engine wrote to the status bucket (`ruby_ctl.rules_live`).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruby_ctl import args as cli_args
from ruby_ctl import rules_import, rules_live, rules_replay
from ruby_ctl.rules_input import InputError, read_events, read_states
from ruby_ctl.rules_sim import Printer, Simulation, stamp
from ruby_rules import load_dir, load_file
from ruby_rules.loader import RULE_FILE_GLOB

DEFAULT_UNTIL = timedelta(hours=1)
"""How long ``rules test`` keeps the clock running after the last event."""


def zone(raw: str) -> tzinfo:
    """An IANA time zone name: ``Europe/Paris``, ``UTC``."""
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {raw!r} (expected an IANA name such as 'Europe/Paris' or 'UTC')"
        ) from None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "rules",
        help="check, test and replay rules; show the engine's rule status and traces",
        description="Rule files are YAML (rules/README.md). check and test need no running "
        "installation; replay, status and trace connect as the operator and only read. "
        "`rubyctl rules VERB --help` says more about each.",
        epilog="examples:\n"
        "  rubyctl rules check\n"
        "  rubyctl rules test rules/hallway.yaml --events evening.jsonl\n"
        "  rubyctl rules replay --since 2h\n"
        "  rubyctl rules status\n"
        "  rubyctl rules trace hallway_light_off\n"
        "  rubyctl rules import-ha automations.yaml -o rules/from_ha.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    check = cli_args.add_verb(
        verbs,
        "check",
        "validate every rule file of a directory",
        "Validate every *.yaml rule file, as the engine would load it, and print each "
        "problem as file:line:column: message. Exit 0 if all is well, 1 if anything is "
        "wrong, 2 if the directory does not exist.",
        "  rubyctl rules check\n  rubyctl rules check --dir ~/home/rules",
    )
    _add_dir(check)
    check.set_defaults(handler=_check)

    test = cli_args.add_verb(
        verbs,
        "test",
        "run the rules of one file against events, on a simulated clock",
        "Feed the events of a JSON-lines file to the rules of FILE, on a simulated clock, "
        "and print what each rule would do: the calls it would send, the events it would "
        "publish, runs not run (and why), runs waiting. Timers (for, delay, wait_for, time "
        "triggers) fire at their own simulated time, and keep firing for --until after the "
        "last event. Nothing is sent; no NATS is needed.\n\n"
        "An events line is one of:\n"
        '  {"time": "2026-11-20T18:00:00Z", "entity_id": "binary_sensor.x", "state": "on",'
        ' "attributes": {}}\n'
        '  {"time": "2026-11-20T18:00:00Z", "event_type": "zha_event", "data": {...}}\n'
        "  an envelope as stored in EVENTS (a dump of real events replays as it is)\n"
        "A time without an offset is in --tz. A state change's old state is the entity's "
        "previous state in the simulation (or from --states). Commands change no state: "
        "add the state changes they would cause as events.",
        "  rubyctl rules test rules/hallway.yaml --events evening.jsonl\n"
        "  rubyctl rules test rules/hallway.yaml --events evening.jsonl \\\n"
        "      --states states.json --until 2h --tz Europe/Paris --json",
    )
    test.add_argument("file", type=Path, metavar="FILE", help="the rule file to test")
    test.add_argument(
        "--events",
        type=Path,
        metavar="FILE",
        required=True,
        help="JSON lines: state changes, events, envelopes",
    )
    test.add_argument(
        "--states",
        type=Path,
        metavar="FILE",
        help='initial states: {"light.hallway": {"state": "on", "attributes": {}}, ...}',
    )
    test.add_argument(
        "--until",
        type=cli_args.duration,
        metavar="DURATION",
        default=DEFAULT_UNTIL,
        help="keep firing timers this long after the last event (default 1h)",
    )
    _add_tz(test)
    test.add_argument("--json", action="store_true", help="one JSON object per line")
    test.set_defaults(handler=_test)

    replay = cli_args.add_verb(
        verbs,
        "replay",
        "replay recorded events through the rules; list the commands they would send",
        "Read the EVENTS history since DURATION ago (as the operator) and run it through a "
        "fresh engine with the rules of --dir, on a clock that follows each message's time. "
        "Lists the commands (and events) each rule would have sent. The engine starts with "
        "no states: a condition on an entity that has not changed since then sees none. "
        "Timers due by now fire. Nothing is published.",
        "  rubyctl rules replay --since 2h\n"
        "  rubyctl rules replay --since 1d --rule hallway_light_off --json",
    )
    replay.add_argument(
        "--since",
        type=cli_args.duration,
        metavar="DURATION",
        required=True,
        help="how far back: 30m, 2h, 1d",
    )
    _add_dir(replay)
    replay.add_argument("--rule", help="only this rule")
    _add_tz(replay)
    replay.add_argument("--json", action="store_true", help="one JSON object per line")
    replay.set_defaults(handler=rules_replay.replay)

    status = cli_args.add_verb(
        verbs,
        "status",
        "show each rule of the running engine: runs, failures, last run; refused files",
        "Read what the engine last wrote to the status bucket: whether it is ready, each "
        "rule with its file, version, mode, run and failure counts and last run, and every "
        "refused file with its errors. Exit 1 if a file is refused or the engine has "
        "written no status.",
        "  rubyctl rules status",
    )
    status.set_defaults(handler=rules_live.status)

    trace = cli_args.add_verb(
        verbs,
        "trace",
        "show the recent runs of one rule, step by step",
        "Print the recent runs of RULE as the engine recorded them: when, how each ended "
        "and why, its trigger, every condition and action step, the command ids it sent.",
        "  rubyctl rules trace hallway_light_off\n  rubyctl rules trace hallway_light_on --last 1",
    )
    trace.add_argument("rule", metavar="RULE", help="the rule id")
    trace.add_argument("--last", type=int, default=5, help="how many runs (default 5)")
    trace.add_argument("--json", action="store_true", help="each run as one JSON line")
    trace.set_defaults(handler=rules_live.trace)

    rules_import.add(verbs)

    for sub in (replay, status, trace):
        sub.add_argument(
            "--nats-url",
            help="connect anonymously to this NATS (a development server without auth); "
            "by default rubyctl connects as the operator identity, with the RUBY_* settings",
        )
        cli_args.add_prefix(sub)


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("RUBY_RULES_DIR", "rules")),
        help="the directory of rule files (env RUBY_RULES_DIR; default rules)",
    )


def _add_tz(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tz",
        type=zone,
        metavar="ZONE",
        default=os.environ.get("RUBY_TIMEZONE"),
        help="the zone rules see the time in (env RUBY_TIMEZONE; default the local zone)",
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if not directory.is_dir():
        print(f"rubyctl rules check: {directory} is not a directory", file=sys.stderr)
        return 2
    files = sorted(directory.glob(RULE_FILE_GLOB))
    if not files:
        print(f"no rule files ({RULE_FILE_GLOB}) in {directory}")
        return 0
    result = load_dir(directory)
    for error in result.errors:
        print(error)
    if result.errors:
        broken = {error.file for error in result.errors}
        print(
            f"{_plural(len(result.errors), 'error')} in {_plural(len(broken), 'file')} "
            f"(in {directory})"
        )
        return 1
    print(f"{_plural(len(result.rules), 'rule')} in {_plural(len(files), 'file')} OK")
    return 0


def _test(args: argparse.Namespace) -> int:
    # A rule file that exists but is a pipe or a device is refused by `load_file`, with why.
    for given, what, found in (
        (args.file, "rule file", os.path.lexists(args.file)),
        (args.events, "events file", args.events.is_file()),
    ):
        if not found:
            print(f"rubyctl rules test: {given}: no such {what}", file=sys.stderr)
            return 2
    loaded = load_file(args.file)
    if loaded.errors:
        for error in loaded.errors:
            print(error, file=sys.stderr)
        print(f"rubyctl rules test: {args.file} has errors: nothing was run", file=sys.stderr)
        return 1
    if not loaded.rules:
        print(f"rubyctl rules test: {args.file} has no rules", file=sys.stderr)
        return 1
    try:
        events, skipped = read_events(args.events, args.tz)
        states = read_states(args.states, events[0].time) if args.states and events else {}
    except InputError as exc:
        print(f"rubyctl rules test: {exc}", file=sys.stderr)
        return 1
    if not events:
        print(f"rubyctl rules test: {args.events}: no events to run", file=sys.stderr)
        return 1

    sim = Simulation(loaded.rules, start=events[0].time, tz=args.tz, states=states)
    show = Printer(json_lines=args.json, tz=args.tz)
    for event in events:
        for happening in sim.handle(event):
            show(happening)
    end = events[-1].time + args.until
    for happening in sim.advance(end):
        show(happening)

    first, last = events[0].time, events[-1].time
    note = f" ({_plural(skipped, 'envelope')} not from HA skipped)" if skipped else ""
    show.summary(
        {
            "events": len(events),
            "skipped": skipped,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "until": end.isoformat(),
        },
        f"summary: {_plural(len(events), 'event')} from {stamp(first, args.tz)} to "
        f"{stamp(last, args.tz)}, simulated until {stamp(end, args.tz)}{note}",
        sim.tally,
    )
    return 0
