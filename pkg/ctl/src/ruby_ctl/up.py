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
import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import hvac.exceptions

from ruby_ctl import args as cli_args
from ruby_ctl.bootstrap import StatePaths, bootstrap
from ruby_ctl.children import Child, console_script
from ruby_ctl.openbao import OpenBao, OpenBaoError, free_port
from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.vault_admin import BootstrapError, write_fields
from ruby_natsx.apply import Action, IncompatibleChangeError, apply_topology
from ruby_natsx.connection import NatsRefusedError
from ruby_natsx.server import NatsServer, NatsServerError, ServerConfig, TlsFiles
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import topology
from ruby_runtime.errors import StartupError
from ruby_runtime.logging import configure_logging
from ruby_runtime.secret import Secret
from ruby_runtime.settings import DEFAULT_VAULT_MOUNT
from ruby_runtime.vault import HA_TOKEN_FIELD, ha_token_path


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    nats_port: int
    http_port: int | None
    prefix: str
    vault_port: int = 8200
    ha_url: str | None = None
    ha_port: int = 8123
    gateway_port: int = 8081


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
        ("the demo home", None if opts.ha_url else opts.ha_port, "--ha-port or RUBY_HA_PORT"),
        ("the gateway's health", opts.gateway_port, "--gateway-port"),
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
        opts = dataclasses.replace(  # 0 = any free port, chosen now so the gateway is told it
            opts, ha_port=opts.ha_port or free_port(), gateway_port=opts.gateway_port or free_port()
        )
        children = _services(opts, state, bao, server)
        try:
            for child in children:
                child.start()
                say(f"{child.name} pid {child.pid} started (log {child.log_path})")
            if not await _gateway_ready(opts, children):
                return 1
            say("Ruby Core is up. Press Ctrl-C to stop.")
            return await _wait_for_stop(server, bao, children)
        finally:
            for child in reversed(children):
                say(f"{child.name} stopped (exit code {child.stop()})")
    finally:
        say(f"nats-server stopped (exit code {server.stop()})")


def _services(opts: UpOptions, state: StatePaths, bao: OpenBao, server: NatsServer) -> list[Child]:
    """The demo home (unless RUBY_HA_URL names a real one) and the gateway."""
    logs = opts.state_dir / "logs"
    env = {
        **os.environ,
        "RUBY_STATE_DIR": str(opts.state_dir),
        "RUBY_PREFIX": opts.prefix,
        "RUBY_NATS_URL": server.url,
        "RUBY_VAULT_ADDR": bao.addr,
        "RUBY_GATEWAY_HEALTH_PORT": str(opts.gateway_port),
    }
    children = []
    if opts.ha_url:
        env["RUBY_HA_URL"] = opts.ha_url
        say(f"home assistant: {opts.ha_url} (token from Vault {ha_token_path(opts.prefix)})")
    else:
        token = secrets.token_urlsafe(32)  # a fresh demo token on every start
        write_fields(
            bao.root_client(),
            DEFAULT_VAULT_MOUNT,
            ha_token_path(opts.prefix),
            {HA_TOKEN_FIELD: Secret(token, "demo home assistant token")},
        )
        env["RUBY_HA_URL"] = f"ws://127.0.0.1:{opts.ha_port}/api/websocket"
        children.append(
            Child(
                "demo home (ruby-hasim)",
                [console_script("ruby-hasim"), "--port", str(opts.ha_port)],
                {**os.environ, "RUBY_HASIM_TOKEN": token},
                logs / "hasim.log",
            )
        )
        say(f"demo home assistant (simulator) on {env['RUBY_HA_URL']}")
    children.append(Child("gateway", [console_script("ruby-gateway")], env, logs / "gateway.log"))
    return children


async def _gateway_ready(opts: UpOptions, children: list[Child], within: float = 60.0) -> bool:
    url = f"http://127.0.0.1:{opts.gateway_port}/readyz"
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            for child in children:
                if not child.alive():
                    say(f"{child.name} exited (code {child.stop()}); see {child.log_path}")
                    return False
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        say(f"gateway ready: {url}")
                        return True
            await asyncio.sleep(0.2)
    say(f"gateway not ready after {within}s; see {children[-1].log_path}")
    return False


async def _wait_for_stop(server: NatsServer, bao: OpenBao, children: list[Child]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        for name, process, log in (
            ("nats-server", server.process, server.log_path),
            ("OpenBao", bao.process, bao.log_path),
            *((c.name, c.process, c.log_path) for c in children),
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
    parser.add_argument(
        "--ha-url",
        default=os.environ.get("RUBY_HA_URL") or None,
        help="a real Home Assistant's WebSocket URL (env RUBY_HA_URL); its token must be in "
        "Vault (field token of <prefix>/gateway/ha). Default: a simulated demo home",
    )
    parser.add_argument(
        "--ha-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_HA_PORT", 8123),
        help="port of the demo home on 127.0.0.1, 0 for any free one (env RUBY_HA_PORT; "
        "default 8123)",
    )
    parser.add_argument(
        "--gateway-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_GATEWAY_HEALTH_PORT", 8081),
        help="the gateway's /healthz and /readyz on 127.0.0.1 (env RUBY_GATEWAY_HEALTH_PORT; "
        "default 8081)",
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
            ha_url=args.ha_url,
            ha_port=args.ha_port if args.ha_port is not None else 8123,
            gateway_port=args.gateway_port if args.gateway_port is not None else 8081,
        )
    )


def run(opts: UpOptions) -> int:
    try:
        return asyncio.run(up(opts))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    finally:
        sys.stdout.flush()
