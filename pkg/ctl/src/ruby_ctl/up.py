"""``rubyctl up``: the whole system on this machine, in the foreground, until Ctrl-C.

In order: OpenBao (initialised on the first start, unsealed on every start; ADR-0015), then
``rubyctl bootstrap`` (identities, secrets, TLS, NATS permissions; a no-op once done), then
nats-server with TLS and one NKEY user per identity (ADR-0005), then the topology, applied as
the operator identity over TLS. Later pieces join here. Everything this command starts, it
stops, by PID, on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import hvac.exceptions

from ruby_ctl import args as cli_args
from ruby_ctl.bootstrap import StatePaths, bootstrap
from ruby_ctl.openbao import OpenBao, OpenBaoError
from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.vault_admin import BootstrapError
from ruby_natsx.apply import Action, IncompatibleChangeError, apply_topology
from ruby_natsx.connection import NatsRefusedError
from ruby_natsx.server import NatsServer, NatsServerError, ServerConfig, TlsFiles
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import topology
from ruby_runtime.errors import StartupError
from ruby_runtime.logging import configure_logging


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    nats_port: int
    http_port: int | None
    prefix: str
    vault_port: int = 8200


def say(line: str) -> None:
    print(f"rubyctl up: {line}", flush=True)


async def up(opts: UpOptions) -> int:
    """Start everything, report where it listens, wait for a stop signal, stop everything."""
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    state = StatePaths(opts.state_dir)
    for name, port, flag in (
        ("nats-server", opts.nats_port, "--nats-port or RUBY_NATS_PORT"),
        ("nats-server monitoring", opts.http_port, "--http-port or RUBY_NATS_HTTP_PORT"),
        ("OpenBao", opts.vault_port, "--vault-port or RUBY_VAULT_PORT"),
    ):
        if port and not _port_free(port):  # fail in a second, not after bootstrapping
            say(f"{name} did not start: 127.0.0.1:{port}: address already in use")
            say(f"is another one running? choose another port with {flag}")
            return 1
    bao = OpenBao(state.openbao, port=opts.vault_port)
    try:
        initialised = bao.start_unsealed()
    except OpenBaoError as exc:
        say(f"OpenBao did not start: {exc}")
        say("is another one running? choose another port with --vault-port or RUBY_VAULT_PORT")
        return 1
    try:
        how = "initialised and unsealed" if initialised else "unsealed"
        say(f"OpenBao pid {bao.pid} on {bao.addr} ({how}; state in {state.openbao})")
        try:
            result = await asyncio.to_thread(bootstrap, bao.root_client(), state, opts.prefix)
        except (BootstrapError, hvac.exceptions.VaultError) as exc:
            say(f"bootstrap failed: {type(exc).__name__}: {exc}")
            return 1
        for change in result.changes:
            say(f"bootstrap: {change}")
        for identity, key in result.public_keys.items():
            say(f"identity {identity}: nkey {key}")
        say(f"bootstrap: {result.summary}")
        return await _run_nats(opts, state, bao)
    finally:
        say(f"OpenBao stopped (exit code {bao.stop()})")


async def _run_nats(opts: UpOptions, state: StatePaths, bao: OpenBao) -> int:
    server = NatsServer(
        ServerConfig(
            state_dir=state.nats,
            port=opts.nats_port,
            http_port=opts.http_port,
            tls=TlsFiles(state.pki.server_cert, state.pki.server_key),
            extra=state.authorization.read_text(),
        )
    )
    try:
        server.start()
    except NatsServerError as exc:
        say(f"nats-server did not start: {exc}")
        say("is another one running? choose another port with --nats-port or RUBY_NATS_PORT")
        return 1
    try:
        say(f"nats-server pid {server.pid} listening on {server.url} (TLS, NKEY users)")
        if opts.http_port is not None:
            say(f"nats-server monitoring on http://127.0.0.1:{opts.http_port}")
        say(f"state in {opts.state_dir}")
        settings = operator_settings(
            {
                **os.environ,
                "RUBY_STATE_DIR": str(opts.state_dir),
                "RUBY_PREFIX": opts.prefix,
                "RUBY_NATS_URL": server.url,
                "RUBY_VAULT_ADDR": bao.addr,
            }
        )
        try:
            nc = await connect_operator(settings, name="rubyctl-up")
        except (StartupError, NatsRefusedError) as exc:
            say(f"cannot connect as the operator: {exc}")
            return 1
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
            f"topology applied as operator: {created} created, {updated} updated, "
            f"{len(changes) - created - updated} unchanged"
        )
        say("Ruby Core is up. Press Ctrl-C to stop.")
        return await _wait_for_stop(server, bao)
    finally:
        say(f"nats-server stopped (exit code {server.stop()})")


async def _wait_for_stop(server: NatsServer, bao: OpenBao) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        for name, process, log in (
            ("nats-server", server.process, server.log_path),
            ("OpenBao", bao.process, bao.log_path),
        ):
            if process is None or process.poll() is not None:
                say(f"{name} exited unexpectedly; see {log}")
                return 1
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            continue
    say("stopping")
    return 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "up",
        help="run the whole system on this machine until Ctrl-C",
        description=(
            "Start OpenBao (initialised on the first start, unsealed on every start), "
            "bootstrap identities and secrets, start nats-server with TLS and one NKEY user "
            "per identity (JetStream, state under --state-dir), apply every stream, consumer "
            "and KV bucket as the operator, print where everything listens, and stay in the "
            "foreground. Ctrl-C (or SIGTERM) stops everything this command started. Running "
            "it again reuses the state and the identities."
        ),
    )
    cli_args.add_state_dir(parser)
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
    parser.add_argument(
        "--vault-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_VAULT_PORT", 8200),
        help="OpenBao API port on 127.0.0.1 (cluster port: the next one), 0 for any free "
        "one (env RUBY_VAULT_PORT; default 8200)",
    )
    cli_args.add_prefix(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    configure_logging("rubyctl", level=os.environ.get("RUBY_LOG_LEVEL", "WARNING"))
    return run(
        UpOptions(
            state_dir=args.state_dir.resolve(),
            nats_port=args.nats_port if args.nats_port is not None else 4222,
            http_port=args.http_port,
            prefix=args.prefix,
            vault_port=args.vault_port if args.vault_port is not None else 8200,
        )
    )


def run(opts: UpOptions) -> int:
    try:
        return asyncio.run(up(opts))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    finally:
        sys.stdout.flush()
