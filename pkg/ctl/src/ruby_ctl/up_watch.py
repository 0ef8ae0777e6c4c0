"""`rubyctl up`'s processes as the supervisor sees them, and the audit of each restart.

nats-server and OpenBao restart on their own ports, configuration and state; OpenBao is
unsealed again from ``init.json`` before it counts as restarted. Each restart is audited by the
operator (``service.restarted``): published at once when NATS is there, otherwise spooled
(``ruby_ctl.audit_spool``) and published as soon as NATS is back.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import hvac.exceptions
import nats.errors
import requests
from nats.aio.client import Client

from ruby_ctl.audit_spool import flush, spool, spool_path
from ruby_ctl.children import Console, exit_text, file_tail
from ruby_ctl.edge import Edge, EdgeError
from ruby_ctl.openbao import OpenBao, OpenBaoError
from ruby_ctl.supervise import RestartError, Supervised
from ruby_ctl.up_stack import NATS, OPENBAO, TRAEFIK, Service
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.server import NatsServer, NatsServerError
from ruby_natsx.subjects import Subjects

RESTARTED = "service.restarted"
"""The audited action of a restart (``ruby_schemas.audit.AUDITED_ACTIONS``)."""
PUBLISH_WITHIN = 5.0
"""Seconds an audit record may take to be stored before it is spooled instead."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def watched_service(service: Service) -> Supervised:
    """A service process: started again with the same command line and environment."""
    child = service.child

    async def restart() -> None:
        try:
            child.start()
        except OSError as exc:
            raise RestartError(_first_line(exc)) from None

    async def tail() -> Sequence[str]:
        await asyncio.to_thread(child.settle, 2.0)  # its last lines are read to the end
        return child.tail()

    return Supervised(
        child.name,
        child.exit_code,
        lambda: child.pid,
        restart,
        tail,
        service.ready,
        service.ready_line,
    )


async def _always(_since: datetime) -> bool:
    return True


class _Server(Protocol):
    """What nats-server and Traefik have in common for the supervisor."""

    process: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int | None: ...

    @property
    def log_path(self) -> Path: ...

    def start(self) -> None: ...


def _watched_server(
    name: str, server: _Server, errors: type[Exception], ready_line: str
) -> Supervised:
    """A server binary: started again with its own ports and configuration; ``start``
    returns once it is ready."""

    async def restart() -> None:
        try:
            await asyncio.to_thread(server.start)
        except errors as exc:
            raise RestartError(_first_line(exc)) from None

    async def tail() -> Sequence[str]:
        return file_tail(server.log_path)

    return Supervised(
        name,
        lambda: None if server.process is None else server.process.poll(),
        lambda: server.pid,
        restart,
        tail,
        _always,
        ready_line,
    )


def watched_nats(server: NatsServer) -> Supervised:
    """nats-server: started again on its port with its configuration and JetStream store;
    ready once it accepts connections (the services reconnect by themselves)."""
    return _watched_server(NATS, server, NatsServerError, f"{NATS} ready: {server.url}")


def watched_edge(edge: Edge) -> Supervised:
    """Traefik: started again on its ports with the same configuration; ready once ``/ping``
    answers."""
    return _watched_server(TRAEFIK, edge, EdgeError, f"{TRAEFIK} ready: {edge.url}")


def watched_openbao(bao: OpenBao) -> Supervised:
    """OpenBao: started again on its ports with its raft store, and unsealed with the key in
    ``init.json``; ready once it is the active node."""

    async def restart() -> None:
        try:
            await asyncio.to_thread(bao.start_unsealed)
        except (OpenBaoError, hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise RestartError(_first_line(exc)) from None

    async def tail() -> Sequence[str]:
        return file_tail(bao.log_path)

    return Supervised(
        OPENBAO,
        lambda: None if bao.process is None else bao.process.poll(),
        lambda: bao.pid,
        restart,
        tail,
        _always,  # `start_unsealed` returns once it is unsealed and active
        f"{OPENBAO} ready: {bao.addr} (unsealed)",
    )


class RestartAudit:
    """Audits restarts as the operator over ``nc`` (which reconnects by itself).

    `restarted` never waits longer than ``PUBLISH_WITHIN`` for NATS: a record it cannot publish
    goes to the spool, which `keep_flushing` publishes once NATS is back (and `rubyctl up`'s
    next start does, if this one ends first). The audit sink is idempotent on record ids, so a
    record both published and spooled is stored once.
    """

    def __init__(self, nc: Client, prefix: str, state_root: Path, console: Console) -> None:
        self._nc = nc
        self._subjects = Subjects(prefix)
        self._root = state_root
        self._console = console
        self._spool_lock = asyncio.Lock()  # a flush never races an append to the spool
        self.restarts: Counter[str] = Counter()

    async def restarted(self, process: Supervised, code: int | None, pid: int) -> None:
        """Audit that ``process`` exited with ``code`` and runs again as ``pid``."""
        self.restarts[process.name] += 1
        record = audit_record(
            self._subjects,
            service=OPERATOR,
            action=RESTARTED,
            target=f"process:{process.name}",
            reason=f"{process.name} exited ({exit_text(code)}); rubyctl up restarted it",
            details={
                "process": process.name,
                "exit_code": code,
                "pid": pid,
                "restarts": self.restarts[process.name],
            },
        )
        if self._nc.is_connected:
            try:
                await asyncio.wait_for(publish_records(self._nc, [record]), PUBLISH_WITHIN)
            except (nats.errors.Error, TimeoutError):
                pass  # NATS went away meanwhile: spooled below
            else:
                return
        async with self._spool_lock:
            spool(self._root, [record])
        self._console.say(
            f"the audit record of {process.name}'s restart waits in {spool_path(self._root)} "
            "until NATS is back"
        )

    async def keep_flushing(self, every: float = 1.0) -> None:
        """Publish what waits in the spool whenever NATS is there; until cancelled."""
        while True:
            await asyncio.sleep(every)
            if not (self._nc.is_connected and spool_path(self._root).is_file()):
                continue
            async with self._spool_lock:
                try:
                    published = await asyncio.wait_for(flush(self._nc, self._root), 10)
                except (nats.errors.Error, TimeoutError):
                    continue  # NATS went away again: the spool is kept whole
            self._console.say(f"published {published} spooled audit record(s)")
