"""`rubyctl up` heals the stack (DESIGN promise 12, ADR-0029): a process that dies, servers
included, is restarted with backoff, said on the console, audited, and ready again; only one
that keeps crashing stops everything, with the reason and exit code 1."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import psutil
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.testing import UpProcess, porch_rules
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT, AUDIT_SINK, ENGINE, GATEWAY, topology
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode

SERVICES = ("audit", "hasim", "gateway", "engine")
TOPOLOGY = topology(Subjects())


def started(up: UpProcess, tmp_path: Path) -> None:
    up.read_until("Ruby Core is up")
    assert set(up.pids()) == {"openbao", "nats-server", *SERVICES, "traefik"}


def kill9(up: UpProcess, name: str) -> tuple[int, float]:
    """SIGKILL the process ``name`` by the PID in its PID file; its PID and when."""
    pid = up.pids()[name]
    os.kill(pid, signal.SIGKILL)
    return pid, time.monotonic()


def restarted(up: UpProcess, name: str, killed: int) -> int:
    """Read up to ``<name> restarted (pid N)``; N, checked against its PID file."""
    line = up.read_until(rf"^rubyctl up: {re.escape(name)} restarted \(pid \d+\)$")
    match = re.search(r"pid (\d+)", line)
    assert match is not None
    pid = int(match.group(1))
    assert pid != killed
    assert up.pids()[name] == pid, "the PID file follows the restart"
    assert psutil.pid_exists(pid)
    return pid


async def last_restart_record(nc: Client) -> AuditRecordV1 | None:
    subject = Subjects().audit("operator", "service_restarted")
    try:
        msg = await nc.jetstream().get_last_msg(TOPOLOGY.stream(AUDIT).name, subject)
    except NotFoundError:
        return None
    record = decode(msg.data or b"").data
    assert isinstance(record, AuditRecordV1)
    return record


async def audited_restart(nc: Client, name: str, pid: int) -> AuditRecordV1:
    """The ``service.restarted`` record of ``name`` restarted as ``pid``, once it is stored."""

    async def found() -> bool:
        record = await last_restart_record(nc)
        return record is not None and (record.details or {}).get("pid") == pid

    await eventually(found, message=f"the restart of {name} audited")
    record = await last_restart_record(nc)
    assert record is not None
    assert record.action == "service.restarted"
    assert record.actor == "service:operator"
    assert record.target == f"process:{name}"
    return record


async def test_killed_processes_are_restarted_ready_again_and_audited(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(tmp_path / "state", porch_rules(tmp_path), "--quiet")
    started(up, tmp_path)
    nc = await connect_operator(operator_settings(up.operator_env()), name="test")
    try:
        # OpenBao: started again on its port and unsealed from init.json.
        bao, at = kill9(up, "openbao")
        up.read_until(r"^rubyctl up: openbao exited unexpectedly \(exit code -9, SIGKILL\)")
        new_bao = restarted(up, "openbao", bao)
        up.read_until(r"^rubyctl up: openbao ready: http://127\.0\.0\.1:\d+ \(unsealed\)$")
        print(f"openbao: unsealed and active again {up.read_at[-1] - at:.2f}s after kill -9")
        await audited_restart(nc, "openbao", new_bao)

        # The engine: back at once, ready again (it logs in to the restarted OpenBao).
        others = {k: v for k, v in up.pids().items() if k != "engine"}
        engine, at = kill9(up, "engine")
        up.read_until(
            r"^rubyctl up: engine exited unexpectedly \(exit code -9, SIGKILL\); "
            r"restarting in 0\.1s; its last lines:$"
        )
        new_engine = restarted(up, "engine", engine)
        assert up.find(r"^rubyctl up:   engine \| .*engine running"), "its last lines are shown"
        back = up.read_at[-1] - at
        up.read_until(r"^rubyctl up: engine ready$")
        ready = up.read_at[-1] - at
        print(f"engine: restarted {back:.2f}s after kill -9, ready after {ready:.2f}s")
        assert back < 3, "the first restart comes at once"
        record = await audited_restart(nc, "engine", new_engine)
        assert record.details == {
            "process": "engine",
            "exit_code": -9,
            "pid": new_engine,
            "restarts": 1,
        }
        assert record.reason == "engine exited (exit code -9, SIGKILL); rubyctl up restarted it"
        # The rest of the stack kept running, untouched.
        assert up.proc.poll() is None
        assert {k: v for k, v in up.pids().items() if k != "engine"} == others
        # Traefik, the API's edge: started again on its ports, ready once /ping answers.
        traefik, at = kill9(up, "traefik")
        up.read_until(r"^rubyctl up: traefik exited unexpectedly \(exit code -9, SIGKILL\)")
        new_traefik = restarted(up, "traefik", traefik)
        up.read_until(r"^rubyctl up: traefik ready: https://127\.0\.0\.1:\d+/api/v1$")
        print(f"traefik: ready again {up.read_at[-1] - at:.2f}s after kill -9")
        await audited_restart(nc, "traefik", new_traefik)
    finally:
        await nc.close()
    assert up.interrupt() == 0
    assert up.stopped()[:2] == [("traefik", 0), ("engine", 0)], "restarted ones stop like others"
    assert up.pids() == {}


async def test_a_process_that_keeps_crashing_stops_the_stack(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    rules = porch_rules(tmp_path)
    up = start_up(tmp_path / "state", rules, "--quiet")
    started(up, tmp_path)
    pids = up.pids()
    rules.rename(tmp_path / "moved")  # the engine refuses to start without its rules directory
    kill9(up, "engine")
    assert up.wait() == 1
    delays = [
        float(m.group(1))
        for line in up.lines
        if (m := re.match(r"^rubyctl up: engine exited unexpectedly .*restarting in (\S+)s", line))
    ]
    assert delays == [0.1, 0.2, 0.4, 0.8], "exponential backoff"
    assert up.find(r"^rubyctl up: engine exited unexpectedly \(exit code 78\)")
    assert up.find(r"^rubyctl up:   engine \| .*is not a directory"), "why it exits is shown"
    assert up.lines.count("rubyctl up: engine crashed 5 times within 60s: stopping everything")
    stopped = up.stopped()
    assert stopped[:2] == [("traefik", 0), ("engine", 78)]  # the edge first, then the engine
    assert stopped[2:] == [(n, 0) for n in ("gateway", "hasim", "audit", "nats-server", "openbao")]
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid), f"{name} (pid {pid}) outlived rubyctl up"
    assert up.pids() == {}


async def _pulling(nc: Client, durable: str) -> bool:
    """Whether the durable's service has a pull request waiting: it consumes again."""
    spec = TOPOLOGY.consumer(durable)
    try:
        info = await nc.jetstream().consumer_info(spec.stream, durable)
    except Exception:  # the operator's own connection is still coming back
        return False
    return bool(info.num_waiting)


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def test_a_killed_nats_server_is_restarted_and_the_services_carry_on(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(tmp_path / "state", porch_rules(tmp_path), "--quiet")
    started(up, tmp_path)
    readyz = up.find(r"gateway ready: (\S+)").group(1)
    before = up.pids()
    nc = await connect_operator(operator_settings(up.operator_env()), name="test")
    try:  # past their start-up: each service consumes
        for durable in (ENGINE, GATEWAY, AUDIT_SINK):
            await eventually(lambda d=durable: _pulling(nc, d), message=f"{durable} pulling")
    finally:
        await nc.close()
    nats, at = kill9(up, "nats-server")
    up.read_until(r"^rubyctl up: nats-server exited unexpectedly \(exit code -9, SIGKILL\)")
    new_nats = restarted(up, "nats-server", nats)
    up.read_until(r"^rubyctl up: nats-server ready: tls://127\.0\.0\.1:\d+$")
    print(f"nats-server: ready again {up.read_at[-1] - at:.2f}s after kill -9")
    nc = await connect_operator(operator_settings(up.operator_env()), name="test")
    try:
        # Each service reconnected by itself and consumes again; the gateway says ready.
        for durable in (ENGINE, GATEWAY, AUDIT_SINK):
            await eventually(lambda d=durable: _pulling(nc, d), message=f"{durable} pulling")
        await eventually(lambda: _ready(readyz), message="gateway /readyz 200 again")
        # The restart is audited (spooled while NATS was away, published once it is back).
        await audited_restart(nc, "nats-server", new_nats)
    finally:
        await nc.close()
    after = up.pids()
    assert {k: v for k, v in after.items() if k != "nats-server"} == {
        k: v for k, v in before.items() if k != "nats-server"
    }, "no service had to be restarted"
    assert up.proc.poll() is None
    assert up.interrupt() == 0
    assert [name for name, _ in up.stopped()] == [
        "traefik",
        "engine",
        "gateway",
        "hasim",
        "audit",
        "nats-server",
        "openbao",
    ]
    assert not [line for line in up.lines if re.search(r"(engine|gateway|audit) restarted", line)]
