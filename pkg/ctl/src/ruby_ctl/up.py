"""``rubyctl up``: the whole system on this machine, in the foreground, until Ctrl-C.

In order: OpenBao (initialised on the first start, unsealed on every start; ADR-0015), then
``rubyctl bootstrap`` (identities, secrets, TLS, NATS permissions; a no-op once done), then
nats-server with TLS and one NKEY user per identity (ADR-0005), then the topology, applied as
the operator identity over TLS, then the services, each once the one before it is ready: the
audit sink (first, so the others' audit records are stored as they come), the demo home
(unless a real Home Assistant is named), the gateway, the engine. Their output goes to their
log files and, prefixed with their name, to the console; each process's PID is in
``<state>/run/<name>.pid``. Then it supervises (``ruby_ctl.supervise``, ADR-0029): a process
that dies, servers included, is restarted with backoff and the restart audited; only a process
that crashes too often stops the stack (exit 1). On SIGINT or SIGTERM everything this command
started is stopped by PID, in reverse order (exit 0).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from datetime import UTC, datetime

import aiohttp
import hvac.exceptions
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from ruby_ctl import audit_spool, up_reload
from ruby_ctl.bootstrap import StatePaths, bootstrap
from ruby_ctl.children import Console, exit_text, wait_ready
from ruby_ctl.edge import Edge, EdgeError
from ruby_ctl.files import write_public
from ruby_ctl.openbao import OpenBao, OpenBaoError, free_port
from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.supervise import PidFiles, Supervisor
from ruby_ctl.up_stack import (
    NATS,
    OPENBAO,
    TRAEFIK,
    Service,
    UpOptions,
    env,
    port_free,
    services,
    where,
)
from ruby_ctl.up_watch import (
    RestartAudit,
    watched_edge,
    watched_nats,
    watched_openbao,
    watched_service,
)
from ruby_ctl.vault_admin import BootstrapError
from ruby_natsx.apply import Action, IncompatibleChangeError, apply_topology
from ruby_natsx.connection import NatsRefusedError
from ruby_natsx.server import NatsServer, NatsServerError, ServerConfig, TlsFiles
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import STATUS, topology
from ruby_runtime.errors import StartupError
from ruby_runtime.startup import close_nats

__all__ = ["UpOptions", "run", "up"]

READY_WITHIN = 60.0
"""Seconds each service has to become ready."""

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
    """Start everything, report where it listens, supervise until a stop signal (0) or until a
    process crashes too often (1), stop everything."""
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    state = StatePaths(opts.state_dir)
    for name, port, flag in (
        ("nats-server", opts.nats_port, "--nats-port or RUBY_NATS_PORT"),
        ("nats-server monitoring", opts.http_port, "--http-port or RUBY_NATS_HTTP_PORT"),
        ("OpenBao", opts.vault_port, "--vault-port or RUBY_VAULT_PORT"),
        ("OpenBao's cluster port", opts.vault_port and opts.vault_port + 1, "--vault-port"),
        ("the demo home", None if opts.ha_url else opts.ha_port, "--ha-port or RUBY_HA_PORT"),
        (
            "the gateway's health",
            None if opts.servers_only else opts.gateway_port,
            "--gateway-port",
        ),
        ("Traefik (the API)", None if opts.servers_only else opts.api_port, "--api-port"),
        (
            "Traefik's redirect",
            None if opts.servers_only else opts.api_http_port,
            "--api-http-port",
        ),
    ):
        if port and not port_free(port):  # fail in a second, not after bootstrapping
            say(f"{name} did not start: 127.0.0.1:{port}: address already in use")
            say(f"is another one running? choose another port with {flag}")
            return 1
    if not opts.servers_only and not opts.rules_dir.is_dir():
        say(f"the engine has no rules directory: {opts.rules_dir} is not a directory")
        say("choose one with --rules or RUBY_RULES_DIR")
        return 1
    pids = PidFiles(opts.run_dir)
    pids.clear()
    opts.ready_file.unlink(missing_ok=True)
    stop = _Stop()
    stop.install()
    try:
        return await _run_openbao(opts, state, pids, stop)
    except asyncio.CancelledError:
        if stop.signal is None:
            raise
        if task := asyncio.current_task():
            task.uncancel()  # our own cancellation (a signal while starting), now handled
        return 128 + stop.signal


async def _run_openbao(opts: UpOptions, state: StatePaths, pids: PidFiles, stop: _Stop) -> int:
    bao = OpenBao(state.openbao, port=opts.vault_port)
    try:
        initialised = bao.start_unsealed()
    except OpenBaoError as exc:
        say(f"OpenBao did not start: {exc}")
        say("is another one running? choose another port with --vault-port or RUBY_VAULT_PORT")
        return 1
    pids.write(OPENBAO, bao.pid)
    try:
        how = "initialised and unsealed" if initialised else "unsealed"
        say(f"{OPENBAO} pid {bao.pid} on {bao.addr} ({how}; state in {state.openbao})")
        try:
            result = await asyncio.to_thread(
                bootstrap,
                bao.root_client(),
                state,
                opts.prefix,
                audit_break_glass=opts.audit_break_glass,
                api_hostnames=opts.api_hostnames,
            )
        except (BootstrapError, hvac.exceptions.VaultError) as exc:
            say(f"bootstrap failed: {type(exc).__name__}: {exc}")
            return 1
        for change in result.changes:
            say(f"bootstrap: {change}")
        for identity, key in result.public_keys.items():
            say(f"identity {identity}: nkey {key}")
        say(f"bootstrap: {result.summary}")
        return await _run_nats(opts, state, bao, pids, stop)
    finally:
        say(f"{OPENBAO} stopped ({exit_text(bao.stop())})")
        pids.remove(OPENBAO)


async def _run_nats(
    opts: UpOptions, state: StatePaths, bao: OpenBao, pids: PidFiles, stop: _Stop
) -> int:
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
    pids.write(NATS, server.pid)
    try:
        say(f"{NATS} pid {server.pid} listening on {server.url} (TLS, NKEY users)")
        try:
            nc = await connect_operator(operator_settings(env(opts, bao, server)), "rubyctl-up")
        except (StartupError, NatsRefusedError) as exc:
            say(f"cannot connect as the operator: {exc}")
            return 1
        try:  # the operator connection: to start, then to watch readiness and audit restarts
            return await _run_services(opts, state, bao, server, nc, pids, stop)
        finally:
            await close_nats(nc, within=5)
    finally:
        say(f"{NATS} stopped ({exit_text(server.stop())})")
        pids.remove(NATS)


async def _run_services(
    opts: UpOptions,
    state: StatePaths,
    bao: OpenBao,
    server: NatsServer,
    nc: Client,
    pids: PidFiles,
    stop: _Stop,
) -> int:
    opts = dataclasses.replace(  # 0 = any free port, chosen now so the gateway is told it
        opts,
        ha_port=opts.ha_port or free_port(),
        gateway_port=opts.gateway_port or free_port(),
        api_port=opts.api_port or free_port(),
        api_http_port=free_port() if opts.api_http_port == 0 else opts.api_http_port,
        gateway_api_port=free_port(),
    )
    js = nc.jetstream()
    if opts.audit_break_glass:
        return await _break_glass(js, opts.prefix, state, bao, nc)
    if not await _apply(js, opts.prefix):
        return 1
    if spooled := await audit_spool.flush(nc, state.root):
        say(f"published {spooled} audit record(s) of bootstrap's changes")
    status = await js.key_value(topology(Subjects(opts.prefix)).bucket(STATUS).bucket)
    started: list[Service] = []
    edge: Edge | None = None
    async with aiohttp.ClientSession() as http:
        try:
            stack = services(opts, bao, server, CONSOLE, status, http)
            if not await _start(stack, started, pids):
                return 1
            if not opts.servers_only:
                edge = Edge(state.root / "traefik", state.pki, opts.gateway_api_port,
                            https_port=opts.api_port, http_port=opts.api_http_port)  # fmt: skip
                try:
                    await asyncio.to_thread(edge.start)
                except EdgeError as exc:
                    say(f"{TRAEFIK} did not start: {exc}")
                    return 1
                pids.write(TRAEFIK, edge.pid)
                say(f"{TRAEFIK} pid {edge.pid} ready: {opts.api_url} (the API's edge)")
            children = [s.child for s in started]
            where(opts, bao, server, children, say)
            write_public(opts.ready_file, f"{os.getpid()}\n")  # then said: tests rely on it
            if opts.servers_only:
                say("the servers are up; start the services (compose starts them now)")
            else:
                say("Ruby Core is up. Press Ctrl-C to stop.")
            stop.waiting = True
            return await _supervise(opts, bao, server, nc, started, pids, stop, edge)
        finally:
            opts.ready_file.unlink(missing_ok=True)
            if edge is not None and edge.process is not None:  # the door closes first
                say(f"{TRAEFIK} stopped ({exit_text(await asyncio.to_thread(edge.stop))})")
                pids.remove(TRAEFIK)
            for service in reversed(started):  # the engine first, the audit sink last
                child = service.child
                was = "stopped" if child.alive() else "had exited"
                say(f"{child.name} {was} ({exit_text(await asyncio.to_thread(child.stop))})")
                pids.remove(child.name)


async def _break_glass(
    js: JetStreamContext, prefix: str, state: StatePaths, bao: OpenBao, nc: Client
) -> int:
    """Apply the topology with AUDIT's lock lifted, record what changed, render the locked
    authorization again (recorded too), publish the records, and stop: 0, or 1 if it failed."""
    ok = await _apply(js, prefix, break_glass=True)
    if ok:
        audit_spool.spool_bootstrap(state.root, prefix, ("AUDIT break-glass: applied",))
    try:
        locked = await asyncio.to_thread(bootstrap, bao.root_client(), state, prefix)
    except (BootstrapError, hvac.exceptions.VaultError) as exc:
        say(f"bootstrap failed: {type(exc).__name__}: {exc}; run `rubyctl bootstrap` to lock")
        return 1
    for change in locked.changes:
        say(f"bootstrap: {change}")
    say(f"published {await audit_spool.flush(nc, state.root)} audit record(s)")
    say("AUDIT break-glass done; the authorization is locked again. Start with `rubyctl up`.")
    return 0 if ok else 1


async def _apply(js: JetStreamContext, prefix: str, *, break_glass: bool = False) -> bool:
    try:
        changes = await apply_topology(
            js, topology(Subjects(prefix)), operator=True, break_glass=break_glass
        )
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


async def _start(stack: list[Service], started: list[Service], pids: PidFiles) -> bool:
    """Start each service once the one before it is ready, appending it to ``started``; False
    (said why) if one does not start or does not become ready."""
    for service in stack:
        child = service.child
        since = datetime.now(UTC)
        try:
            child.start()
        except OSError as exc:  # a console script missing: the workspace is not installed
            say(f"{child.name} did not start: {exc}; install the workspace with `make sync`")
            return False
        started.append(service)
        pids.write(child.name, child.pid)
        say(f"{child.name} pid {child.pid} started (log {child.log_path})")

        async def probe(check: Service = service, at: datetime = since) -> bool:
            return await check.ready(at)

        watched = [s.child for s in started]
        if not await wait_ready(CONSOLE, service.ready_line, probe, watched, READY_WITHIN):
            return False
    return True


async def _supervise(
    opts: UpOptions,
    bao: OpenBao,
    server: NatsServer,
    nc: Client,
    started: list[Service],
    pids: PidFiles,
    stop: _Stop,
    edge: Edge | None = None,
) -> int:
    """0 when a signal asks to stop; 1 (said why) when a process crashes too often."""
    audit = RestartAudit(nc, opts.prefix, opts.state_dir, CONSOLE)
    watched = [watched_openbao(bao), watched_nats(server), *map(watched_service, started)]
    if edge is not None:
        watched.append(watched_edge(edge))
    supervisor = Supervisor(watched, CONSOLE, pids, audit.restarted, ready_within=READY_WITHIN)
    supervising = asyncio.create_task(supervisor.run(), name="supervise")
    flushing = asyncio.create_task(audit.keep_flushing(), name="flush audit spool")
    stopping = asyncio.create_task(stop.requested.wait(), name="stop requested")
    reloading = asyncio.create_task(
        _reloading(opts, supervisor, [s.child.name for s in started], stop.requested),
        name="reload on change",
    )
    try:
        await asyncio.wait({supervising, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (supervising, flushing, stopping, reloading):
            task.cancel()
        ended = await asyncio.gather(
            supervising, flushing, stopping, reloading, return_exceptions=True
        )
    reason = ended[0]
    if isinstance(reason, str):
        say(f"{reason}: stopping everything")
        return 1
    if isinstance(reason, Exception):
        raise reason  # a defect in the supervisor itself: shown, after everything is stopped
    return 0


async def _reloading(
    opts: UpOptions, supervisor: Supervisor, running: list[str], stop: asyncio.Event
) -> None:
    """With ``--reload``: restart the services whose source changes, until ``stop``."""
    if not opts.reload:
        return
    watched, missing = up_reload.sources(running)
    if missing:
        say(f"--reload: not watching {', '.join(missing)} (installed, not this checkout's source)")
    say(f"--reload: watching {len(watched)} source folders; a change restarts its services")
    await up_reload.reload_on_change(watched, supervisor.reload, stop, say)


def run(opts: UpOptions) -> int:
    try:
        return asyncio.run(up(opts))
    except KeyboardInterrupt:  # Ctrl-C before up's own handlers were installed
        return 130
    finally:
        CONSOLE.close()
        sys.stdout.flush()
