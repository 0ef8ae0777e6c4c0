"""``rubyctl up``: the whole system on this machine, in the foreground, until Ctrl-C.

In order: OpenBao (initialised on the first start, unsealed on every start; ADR-0015), then
``rubyctl bootstrap`` (identities, secrets, TLS, NATS permissions; a no-op once done), then
nats-server with TLS and one NKEY user per identity (ADR-0005), then the topology, applied as
the operator identity over TLS, then the services, each once the one before it is ready: the
audit sink (first, so the others' audit records are stored as they come), the demo home
(unless a real Home Assistant is named), the gateway, the engine. Their output goes to their
log files and, prefixed with their name, to the console. On SIGINT or SIGTERM, or when one of
them dies, everything this command started is stopped by PID, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import hvac.exceptions
from nats.js.client import JetStreamContext

from ruby_ctl import audit_spool
from ruby_ctl.bootstrap import StatePaths, bootstrap
from ruby_ctl.children import (
    Child,
    Console,
    console_script,
    exit_text,
    file_tail,
    http_ok,
    status_ready,
    wait_ready,
)
from ruby_ctl.openbao import OpenBao, OpenBaoError, free_port
from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.secret import SOURCE_FIELD
from ruby_ctl.vault_admin import BootstrapError, read_field, write_fields
from ruby_natsx.apply import Action, IncompatibleChangeError, apply_topology
from ruby_natsx.connection import NatsRefusedError
from ruby_natsx.server import NatsServer, NatsServerError, ServerConfig, TlsFiles
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import AUDIT_SINK, ENGINE, STATUS, topology
from ruby_runtime.errors import StartupError
from ruby_runtime.secret import Secret
from ruby_runtime.settings import (
    DEFAULT_NATS_URL,
    DEFAULT_PREFIX,
    DEFAULT_STATE_DIR,
    DEFAULT_VAULT_ADDR,
    DEFAULT_VAULT_MOUNT,
)
from ruby_runtime.vault import HA_TOKEN_FIELD, ha_token_path

READY_WITHIN = 60.0
"""Seconds each service has to become ready."""
AUDIT = "audit"
"""The audit sink's name on the console (``audit   | ...``) and in up's own lines."""


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
    rules_dir: Path = Path("rules")
    quiet: bool = False


CONSOLE = Console("rubyctl up")
"""stdout: up's own lines and its children's, one whole line at a time."""
say = CONSOLE.say


class _Stop:
    """SIGINT / SIGTERM: while starting, cancel the start (each step stops what it started);
    once everything is up, end the wait. Later signals are ignored: stopping is bounded."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.signal: signal.Signals | None = None
        self.waiting = False
        self._task = asyncio.current_task()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            return
        self.signal = sig
        self.requested.set()
        say(f"{sig.name} received: stopping")
        if not self.waiting and self._task is not None:
            self._task.cancel()


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
    if not opts.rules_dir.is_dir():
        say(f"the engine has no rules directory: {opts.rules_dir} is not a directory")
        say("choose one with --rules or RUBY_RULES_DIR")
        return 1
    stop = _Stop()
    stop.install()
    try:
        return await _run_openbao(opts, state, stop)
    except asyncio.CancelledError:
        if stop.signal is None:
            raise
        if task := asyncio.current_task():
            task.uncancel()  # our own cancellation (a signal while starting), now handled
        return 128 + stop.signal


async def _run_openbao(opts: UpOptions, state: StatePaths, stop: _Stop) -> int:
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
        return await _run_nats(opts, state, bao, stop)
    finally:
        say(f"OpenBao stopped ({exit_text(bao.stop())})")


async def _run_nats(opts: UpOptions, state: StatePaths, bao: OpenBao, stop: _Stop) -> int:
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
        try:
            nc = await connect_operator(operator_settings(_env(opts, bao, server)), "rubyctl-up")
        except (StartupError, NatsRefusedError) as exc:
            say(f"cannot connect as the operator: {exc}")
            return 1
        opts = dataclasses.replace(  # 0 = any free port, chosen now so the gateway is told it
            opts, ha_port=opts.ha_port or free_port(), gateway_port=opts.gateway_port or free_port()
        )
        children: list[Child] = []
        try:
            try:
                if not await _apply(nc.jetstream(), opts.prefix):
                    return 1
                if spooled := await audit_spool.flush(nc, state.root):
                    say(f"published {spooled} audit record(s) of bootstrap's changes")
                children = _services(opts, bao, server)
                if not await _start(children, nc.jetstream(), opts):
                    return 1
            finally:
                await nc.close()  # the operator connection is for starting only
            _where(opts, bao, server, children)
            say("Ruby Core is up. Press Ctrl-C to stop.")
            stop.waiting = True
            return await _wait_for_stop(server, bao, children, stop)
        finally:
            for child in reversed(children):  # the engine first, the audit sink last
                if child.process is not None:
                    was = "stopped" if child.alive() else "had exited"
                    say(f"{child.name} {was} ({exit_text(child.stop())})")
    finally:
        say(f"nats-server stopped ({exit_text(server.stop())})")


async def _apply(js: JetStreamContext, prefix: str) -> bool:
    try:
        changes = await apply_topology(js, topology(Subjects(prefix)))
    except IncompatibleChangeError as exc:
        say(f"cannot apply the declared topology: {exc}")
        return False
    for change in changes:
        say(str(change))
    created = sum(c.action is Action.CREATED for c in changes)
    updated = sum(c.action is Action.UPDATED for c in changes)
    say(
        f"topology applied as operator: {created} created, {updated} updated, "
        f"{len(changes) - created - updated} unchanged"
    )
    return True


def _services(opts: UpOptions, bao: OpenBao, server: NatsServer) -> list[Child]:
    """In start order: the audit sink, the demo home (unless RUBY_HA_URL names a real one),
    the gateway, the engine."""
    logs = opts.state_dir / "logs"
    console = None if opts.quiet else CONSOLE
    env = {**os.environ, **_env(opts, bao, server)}
    audit_env = {**env, "RUBY_AUDIT_DB": str(_audit_db(opts))}
    children = [
        Child(AUDIT, [console_script("ruby-audit-sink")], audit_env, logs / "audit.log", console)
    ]
    if opts.ha_url:
        ha_url = opts.ha_url
        say(f"home assistant: {ha_url} (token from Vault {ha_token_path(opts.prefix)})")
    else:
        token = secrets.token_urlsafe(32)  # a fresh demo token on every start
        vault = bao.root_client()
        path = ha_token_path(opts.prefix)
        source = read_field(vault, DEFAULT_VAULT_MOUNT, path, SOURCE_FIELD)
        if source is not None and source.reveal() != DEMO_SOURCE:
            say(
                f"the demo home replaces the Home Assistant token stored with `rubyctl secret "
                f"ha-token` in Vault ({DEFAULT_VAULT_MOUNT}/{path}): store it again before "
                "using --ha-url"
            )
        write_fields(
            vault,
            DEFAULT_VAULT_MOUNT,
            path,
            {
                HA_TOKEN_FIELD: Secret(token, "demo home assistant token"),
                SOURCE_FIELD: Secret(DEMO_SOURCE, "source"),
            },
        )
        ha_url = _demo_url(opts)
        children.append(
            Child(
                "hasim",
                [
                    console_script("ruby-hasim"),
                    "--port",
                    str(opts.ha_port),
                    "--activity",
                    str(DEMO_ACTIVITY),
                ],
                {**os.environ, "RUBY_HASIM_TOKEN": token},
                logs / "hasim.log",
                console,
            )
        )
        say(f"demo home assistant (simulator) on {ha_url}")
    gateway_env = {
        **env,
        "RUBY_HA_URL": ha_url,
        "RUBY_GATEWAY_HEALTH_PORT": str(opts.gateway_port),
    }
    engine_env = {**env, "RUBY_RULES_DIR": str(opts.rules_dir)}
    return [
        *children,
        Child(
            "gateway", [console_script("ruby-gateway")], gateway_env, logs / "gateway.log", console
        ),
        Child("engine", [console_script("ruby-engine")], engine_env, logs / "engine.log", console),
    ]


async def _start(children: list[Child], js: JetStreamContext, opts: UpOptions) -> bool:
    """Start each child once the one before it is ready; False (said why) if one is not."""
    for i, child in enumerate(children):
        since = datetime.now(UTC)
        try:
            child.start()
        except OSError as exc:  # a console script missing: the workspace is not installed
            say(f"{child.name} did not start: {exc}; install the workspace with `make sync`")
            return False
        say(f"{child.name} pid {child.pid} started (log {child.log_path})")
        watched = children[: i + 1]
        status = topology(Subjects(opts.prefix)).bucket(STATUS).bucket
        if child.name == AUDIT:
            probe = status_ready(await js.key_value(status), AUDIT_SINK, since)
            ready = await wait_ready(CONSOLE, "audit sink ready", probe, watched, READY_WITHIN)
        elif child.name == "gateway":
            url = _readyz(opts)
            async with aiohttp.ClientSession() as http:
                ready = await wait_ready(
                    CONSOLE, f"gateway ready: {url}", http_ok(http, url), watched, READY_WITHIN
                )
        elif child.name == "engine":
            probe = status_ready(await js.key_value(status), ENGINE, since)
            ready = await wait_ready(CONSOLE, "engine ready", probe, watched, READY_WITHIN)
        else:
            ready = True
        if not ready:
            return False
    return True


async def _wait_for_stop(
    server: NatsServer, bao: OpenBao, children: list[Child], stop: _Stop
) -> int:
    """0 when a signal asks to stop; 1 (said which and why) when a process dies first."""
    while not stop.requested.is_set():
        for name, process, log in (
            ("nats-server", server.process, server.log_path),
            ("OpenBao", bao.process, bao.log_path),
        ):
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                say(f"{name} exited unexpectedly ({exit_text(code)}); its last lines ({log}):")
                CONSOLE.say_tail(name, file_tail(log))
                return 1
        for child in children:
            if not child.alive():
                child.report_exit(CONSOLE)
                return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.requested.wait(), timeout=1.0)
    return 0


def _env(opts: UpOptions, bao: OpenBao, server: NatsServer) -> dict[str, str]:
    """The ``RUBY_*`` settings that lead a service (or rubyctl) to this stack."""
    return {
        "RUBY_STATE_DIR": str(opts.state_dir),
        "RUBY_PREFIX": opts.prefix,
        "RUBY_NATS_URL": server.url,
        "RUBY_VAULT_ADDR": bao.addr,
    }


def _audit_db(opts: UpOptions) -> Path:
    """Where the audit sink keeps the audit store (``RUBY_AUDIT_DB``)."""
    return opts.state_dir / "audit" / "audit.db"


def _demo_url(opts: UpOptions) -> str:
    return f"ws://127.0.0.1:{opts.ha_port}/api/websocket"


def _readyz(opts: UpOptions) -> str:
    return f"http://127.0.0.1:{opts.gateway_port}/readyz"


def _where(opts: UpOptions, bao: OpenBao, server: NatsServer, children: list[Child]) -> None:
    """What listens where, where the rules, state and logs are, and how to watch the rules."""
    monitoring = f" (monitoring http://127.0.0.1:{opts.http_port})" if opts.http_port else ""
    rules = ", ".join(sorted(p.name for p in opts.rules_dir.glob("*.yaml"))) or "no *.yaml"
    logs = ", ".join(c.log_path.name for c in children)
    say(f"  NATS      {server.url}{monitoring}")
    say(f"  OpenBao   {bao.addr}")
    say(f"  gateway   {_readyz(opts)}")
    say(f"  home      {opts.ha_url or _demo_url(opts) + ' (the demo home, ruby-hasim)'}")
    say(f"  rules     {opts.rules_dir} ({rules})")
    say(f"  audit     {_audit_db(opts)} (the audit store)")
    say(f"  state     {opts.state_dir}")
    say(f"  logs      {opts.state_dir / 'logs'}: {logs}; {server.log_path}; {bao.log_path}")
    defaults = {  # what rubyctl's other commands assume (those of `make run`)
        "RUBY_STATE_DIR": str(Path(DEFAULT_STATE_DIR).resolve()),
        "RUBY_PREFIX": DEFAULT_PREFIX,
        "RUBY_NATS_URL": DEFAULT_NATS_URL,
        "RUBY_VAULT_ADDR": DEFAULT_VAULT_ADDR,
    }
    changed = [f"{k}={v}" for k, v in _env(opts, bao, server).items() if v != defaults[k]]
    if changed:
        say(f"other rubyctl commands reach this stack with: export {' '.join(changed)}")
    say("watch the rules: `rubyctl rules status`; one rule's runs: `rubyctl rules trace <id>`")
    if not opts.ha_url and (opts.rules_dir / "hallway.yaml").is_file():
        say(
            f"the hallway demo: it is dusk in the demo home and someone passes the hallway "
            f"every {DEMO_ACTIVITY // 60} minutes: the light turns on at once and off 5 minutes "
            "later; follow it with `rubyctl rules trace hallway_light_on` and "
            "`rubyctl rules trace hallway_light_off`"
        )


DEMO_SOURCE = "demo"
"""The ``source`` field of the Home Assistant token the demo home writes to Vault."""

DEMO_ACTIVITY = 420
"""Seconds between passes in the demo home's hallway (``ruby-hasim --activity``): longer than
the hallway rule's 5 minutes, so the light is seen going off as well as on."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run(opts: UpOptions) -> int:
    try:
        return asyncio.run(up(opts))
    except KeyboardInterrupt:  # Ctrl-C before up's own handlers were installed
        return 130
    finally:
        CONSOLE.close()
        sys.stdout.flush()
