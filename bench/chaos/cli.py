"""``make chaos`` / ``python bench/chaos``: the command line, the network namespace, clean-up."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from chaos.home import (
    HA_DIR,
    HA_TOOLS,
    HomeError,
    choose_home,
    offline_for,
    run_in_state_dir,
)
from chaos.model import KINDS
from chaos.report import render
from chaos.run import Options, make_home, run, say, write_rules
from chaos.stack import Ports, Stack, free_port
from ruby_ctl.children import console_script

NETNS_MARK = "RUBY_CHAOS_NETNS"
"""Set when the run has re-executed itself inside a network namespace with only loopback."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make chaos",
        description=(
            "The chaos run (issue 11): Home Assistant plus the whole stack under `rubyctl up` "
            "on free ports and a fresh state directory, mirror rules (each source's on/off "
            "copied onto its mirror), toggles at --rate while kill -9 hits the gateway, the "
            "engine, the audit sink and nats-server at random (seeded) moments. Prints, per "
            "kind of kill: downtime, source changes mirrored on time, late, superseded and "
            "skipped, applied stale, wrong-way mirror changes, flapping bursts, commands "
            "executed twice, and whether every mirror ended equal to its source. It reports; "
            "it asserts nothing. Exit 0 when the run was made (whatever it found), 1 when it "
            "could not start, 2 when the stack stopped during the run (the report says so)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=6.0, help="minutes of toggling (at least)")
    p.add_argument(
        "--kills",
        type=int,
        default=20,
        help="kill -9 count, spread evenly over the kinds killed",
    )
    p.add_argument(
        "--only",
        choices=KINDS,
        action="append",
        metavar="KIND",
        help=f"kill only this kind (repeatable; one of {', '.join(KINDS)}); default: all",
    )
    p.add_argument("--rate", type=float, default=10.0, help="source changes per second, in all")
    p.add_argument("--seed", type=int, default=1, help="seed of the kills' order and moments")
    p.add_argument(
        "--ha",
        choices=("auto", "real", "sim"),
        default="auto",
        help=f"real: Home Assistant from HA_DIR ({HA_DIR}) with {HA_TOOLS}, run inside a "
        "network namespace with only loopback; sim: the simulator; auto: real if installed",
    )
    p.add_argument("--keep", action="store_true", help="keep the state directory (logs, audit)")
    return p


async def _main(args: argparse.Namespace, kind: str, state_dir: Path) -> int:
    opts = Options(args.minutes, args.kills, args.rate, args.seed, tuple(args.only or KINDS))
    home = make_home(kind, free_port(), console_script("ruby-hasim"))
    rules = state_dir / "chaos-rules"
    write_rules(rules, home.pairs)
    stack = Stack(state_dir, Ports.free(), rules, home.url, console_script("rubyctl"))
    if (task := asyncio.current_task()) is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        say(f"starting the {home.label} on port {home.port}")
        await asyncio.to_thread(home.start, state_dir / "home.log")
        outcome = await run(opts, home, stack)
    finally:
        say(f"rubyctl up {await stack.stop()}; Home Assistant: {home.stop()}")
    print("\n".join(render(outcome)), flush=True)
    return 2 if outcome.stack_stopped else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.kills < 0 or args.rate <= 0 or args.minutes <= 0:
        print("make chaos: --kills must be >= 0, --rate and --minutes > 0", file=sys.stderr)
        return 1
    try:
        kind = choose_home(args.ha)
        offline_for(kind, NETNS_MARK, say)
    except HomeError as exc:
        print(f"make chaos: {exc}", file=sys.stderr)
        return 1
    return run_in_state_dir(
        "make chaos", "ruby-chaos-", args.keep, lambda state: _main(args, kind, state), say
    )
