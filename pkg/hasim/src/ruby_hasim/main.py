"""`ruby-hasim`: run a virtual home on Home Assistant's WebSocket API until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from ruby_hasim.activity import evening
from ruby_hasim.home import HomeError, default_home, generate_home, load_home
from ruby_hasim.server import DEFAULT_TOKEN, Simulator

FIRST_PASS = 20.0
"""Seconds from start to the first pass of ``--activity``: time for the stack to come up."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruby-hasim", description="A simulated Home Assistant WebSocket API on 127.0.0.1."
    )
    home = parser.add_mutually_exclusive_group()
    home.add_argument("--home", metavar="FILE", help="home YAML file (default: the packaged one)")
    home.add_argument("--generate", metavar="N", type=int, help="a generated home of N entities")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="port (default 8123; 0: any free)")
    parser.add_argument(
        "--token",
        default=os.environ.get("RUBY_HASIM_TOKEN", DEFAULT_TOKEN),
        help="the access token to accept (env RUBY_HASIM_TOKEN, which keeps it out of the "
        "process list; default: the well-known test token)",
    )
    parser.add_argument(
        "--activity",
        metavar="SECONDS",
        type=float,
        help="play a scripted evening: dusk outside, and motion in the hallway for 5 s every "
        "SECONDS, the first 20 s after start (SECONDS > 5; the demo uses 420, so the hallway "
        "light also goes off)",
    )
    return parser


async def _serve(sim: Simulator, activity: float | None) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # both stop it cleanly, with exit code 0
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with sim:
        print(f"ruby-hasim: {len(sim.states)} entities on {sim.url}", flush=True)
        if activity is None:
            await stop.wait()
            return
        print(
            f"ruby-hasim: a scripted evening: hallway motion in {FIRST_PASS:g}s, "
            f"then every {activity:g}s",
            flush=True,
        )
        script = asyncio.create_task(evening(sim, period=activity, first=FIRST_PASS))
        await asyncio.wait(
            [script, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        script.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await script


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground; Ctrl-C or SIGTERM stops it."""
    args = _parser().parse_args(argv)
    try:
        if args.home:
            spec = load_home(args.home)
        elif args.generate is not None:
            spec = generate_home(args.generate)
        else:
            spec = default_home()
    except (OSError, HomeError) as exc:
        print(f"ruby-hasim: {exc}", file=sys.stderr)
        return 2
    if args.activity is not None and args.activity <= 5:
        print("ruby-hasim: --activity must be more than 5 seconds", file=sys.stderr)
        return 2
    sim = Simulator(spec, token=args.token, host=args.host, port=args.port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim, args.activity))
    return 0


if __name__ == "__main__":
    sys.exit(main())
