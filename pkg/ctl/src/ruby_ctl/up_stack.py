"""What `rubyctl up` runs: its options, the service processes with their readiness checks,
and what it prints about where everything is."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
from nats.js.kv import KeyValue

from ruby_ctl.children import Child, Console, console_script, http_ok
from ruby_ctl.openbao import OpenBao
from ruby_ctl.secret import SOURCE_FIELD
from ruby_ctl.vault_admin import read_field, write_fields
from ruby_natsx.server import NatsServer
from ruby_natsx.status import status_ready
from ruby_natsx.topology import AUDIT_SINK, ENGINE
from ruby_runtime.secret import Secret
from ruby_runtime.settings import (
    DEFAULT_NATS_URL,
    DEFAULT_PREFIX,
    DEFAULT_STATE_DIR,
    DEFAULT_VAULT_ADDR,
    DEFAULT_VAULT_MOUNT,
)
from ruby_runtime.vault import HA_TOKEN_FIELD, ha_token_path

AUDIT = "audit"
"""The audit sink's name on the console (``audit   | ...``), in up's own lines and PID file."""
HASIM = "hasim"
"""The demo home's name (``ruby-hasim``)."""
OPENBAO = "openbao"
NATS = "nats-server"
TRAEFIK = "traefik"

DEMO_SOURCE = "demo"
"""The ``source`` field of the Home Assistant token the demo home writes to Vault."""
DEMO_ACTIVITY = 420
"""Seconds between passes in the demo home's hallway (``ruby-hasim --activity``): longer than
the hallway rule's 5 minutes, so the light is seen going off as well as on."""


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
    api_port: int = 8443
    """Traefik's HTTPS port, the API's address (``--api-port``)."""
    api_http_port: int | None = 8080
    """Traefik's plain-HTTP port, which redirects to HTTPS; None: none."""
    api_hostnames: tuple[str, ...] = ()
    """Names Traefik's certificate carries besides localhost (``--api-hostnames``)."""
    gateway_api_port: int = 0
    """The gateway's own API listener, behind Traefik: chosen free at each start."""
    rules_dir: Path = Path("rules")
    quiet: bool = False
    reload: bool = False
    """Restart a service when its Python source changes (``--reload``, ADR-0010)."""
    servers_only: bool = False
    """Start the servers (OpenBao, bootstrap, nats-server, the topology) and the demo home,
    not the three services: the compose files run each service in its own container."""
    audit_break_glass: bool = False
    """Apply AUDIT's declared configuration over the server's, audited, then lock it again
    and stop, starting no service (ADR-0005)."""

    @property
    def audit_db(self) -> Path:
        """Where the audit sink keeps the audit store (``RUBY_AUDIT_DB``)."""
        return self.state_dir / "audit" / "audit.db"

    @property
    def demo_url(self) -> str:
        return f"ws://127.0.0.1:{self.ha_port}/api/websocket"

    @property
    def readyz(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/readyz"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}/api/v1"

    @property
    def run_dir(self) -> Path:
        """Where each process's PID file is (``<name>.pid``)."""
        return self.state_dir / "run"

    @property
    def ready_file(self) -> Path:
        """Present while everything this ``rubyctl up`` started is up: the compose stack's
        healthcheck (written once all is ready, removed at start and when stopping)."""
        return self.run_dir / "up.ready"


ReadyCheck = Callable[[datetime], Awaitable[bool]]
"""Whether a service is ready, by what it wrote after the given time; never raises."""


@dataclass(frozen=True)
class Service:
    """A service process, how to tell that it is ready, and what is said when it is."""

    child: Child
    ready: ReadyCheck
    ready_line: str


def env(opts: UpOptions, bao: OpenBao, server: NatsServer) -> dict[str, str]:
    """The ``RUBY_*`` settings that lead a service (or rubyctl) to this stack."""
    return {
        "RUBY_STATE_DIR": str(opts.state_dir),
        "RUBY_PREFIX": opts.prefix,
        "RUBY_NATS_URL": server.url,
        "RUBY_VAULT_ADDR": bao.addr,
    }


def services(
    opts: UpOptions,
    bao: OpenBao,
    server: NatsServer,
    console: Console,
    status: KeyValue,
    http: aiohttp.ClientSession,
) -> list[Service]:
    """In start order: the audit sink, the demo home (unless RUBY_HA_URL names a real one),
    the gateway, the engine; only the demo home with ``servers_only``. The demo home's token is
    written to Vault now."""
    logs = opts.state_dir / "logs"
    out = None if opts.quiet else console
    base = {**os.environ, **env(opts, bao, server)}

    def status_check(key: str) -> ReadyCheck:
        async def check(since: datetime) -> bool:
            try:
                return await asyncio.wait_for(status_ready(status, key, since), 5)
            except Exception:  # NATS away or reconnecting: not ready yet
                return False

        return check

    audit_env = {**base, "RUBY_AUDIT_DB": str(opts.audit_db)}
    found = [
        Service(
            Child(AUDIT, [console_script("ruby-audit-sink")], audit_env, logs / "audit.log", out),
            status_check(AUDIT_SINK),
            f"{AUDIT} ready (the audit sink, store {opts.audit_db})",
        )
    ]
    if opts.servers_only:
        found.clear()
    if opts.ha_url:
        ha_url = opts.ha_url
        console.say(f"home assistant: {ha_url} (token from Vault {ha_token_path(opts.prefix)})")
    else:
        ha_url = opts.demo_url
        argv = [console_script("ruby-hasim"), "--port", str(opts.ha_port)]
        argv += ["--activity", str(DEMO_ACTIVITY)]
        hasim_env = {**os.environ, "RUBY_HASIM_TOKEN": _demo_token(opts, bao, console)}
        found.append(
            Service(
                Child(HASIM, argv, hasim_env, logs / "hasim.log", out),
                lambda _since: _listening(opts.ha_port),
                f"{HASIM} ready: {ha_url}",
            )
        )
        console.say(f"demo home assistant (simulator) on {ha_url}")
    gateway_env = {
        **base,
        "RUBY_HA_URL": ha_url,
        "RUBY_GATEWAY_HEALTH_PORT": str(opts.gateway_port),
        "RUBY_GATEWAY_API_PORT": str(opts.gateway_api_port),
    }
    probe = http_ok(http, opts.readyz)
    engine_env = {**base, "RUBY_RULES_DIR": str(opts.rules_dir)}
    if opts.servers_only:
        return found
    return [
        *found,
        Service(
            Child(
                "gateway", [console_script("ruby-gateway")], gateway_env, logs / "gateway.log", out
            ),
            lambda _since: probe(),
            f"gateway ready: {opts.readyz}",
        ),
        Service(
            Child("engine", [console_script("ruby-engine")], engine_env, logs / "engine.log", out),
            status_check(ENGINE),
            "engine ready",
        ),
    ]


def _demo_token(opts: UpOptions, bao: OpenBao, console: Console) -> str:
    """A fresh token for the demo home, written to Vault where the gateway reads it."""
    token = secrets.token_urlsafe(32)
    vault = bao.root_client()
    path = ha_token_path(opts.prefix)
    source = read_field(vault, DEFAULT_VAULT_MOUNT, path, SOURCE_FIELD)
    if source is not None and source.reveal() != DEMO_SOURCE:
        console.say(
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
    return token


async def _listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be listened on. With SO_REUSEADDR, as the servers bind:
    the connections a stopped server left in TIME_WAIT do not count, a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def where(
    opts: UpOptions,
    bao: OpenBao,
    server: NatsServer,
    children: list[Child],
    say: Callable[[str], None],
) -> None:
    """What listens where, where the rules, state and logs are, and how to watch the rules."""
    monitoring = f" (monitoring http://127.0.0.1:{opts.http_port})" if opts.http_port else ""
    rules = ", ".join(sorted(p.name for p in opts.rules_dir.glob("*.yaml"))) or "no *.yaml"
    logs = ", ".join(c.log_path.name for c in children)
    say(f"  NATS      {server.url}{monitoring}")
    say(f"  OpenBao   {bao.addr}")
    say(f"  home      {opts.ha_url or opts.demo_url + ' (the demo home, ruby-hasim)'}")
    if opts.servers_only:
        say("  services  not started here (--servers-only): each runs on its own")
    else:
        say(
            f"  api       {opts.api_url} (Traefik; a token: rubyctl token create NAME --scope read)"
        )
        say(f"  gateway   {opts.readyz}")
        say(f"  rules     {opts.rules_dir} ({rules})")
        say(f"  audit     {opts.audit_db} (the audit store)")
    say(f"  state     {opts.state_dir}")
    say(f"  logs      {opts.state_dir / 'logs'}: {logs}; {server.log_path}; {bao.log_path}")
    say(f"  pids      {opts.run_dir}/<name>.pid")
    defaults = {  # what rubyctl's other commands assume (those of `make run`)
        "RUBY_STATE_DIR": str(Path(DEFAULT_STATE_DIR).resolve()),
        "RUBY_PREFIX": DEFAULT_PREFIX,
        "RUBY_NATS_URL": DEFAULT_NATS_URL,
        "RUBY_VAULT_ADDR": DEFAULT_VAULT_ADDR,
    }
    changed = [f"{k}={v}" for k, v in env(opts, bao, server).items() if v != defaults[k]]
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
