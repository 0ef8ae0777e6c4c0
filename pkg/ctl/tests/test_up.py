"""`rubyctl up` (what `make run` runs): OpenBao, bootstrap, nats-server (TLS + NKEY) with the
topology applied as the operator, the audit sink, the demo home, the gateway and the engine,
their output prefixed on the console and their PIDs in PID files; stops everything on Ctrl-C,
the engine first; a second start, at once and on the same ports, reuses it all. What happens
when a process dies: `test_up_supervise.py`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psutil
import pytest

from ruby_ctl.children import Child, Console
from ruby_ctl.openbao import free_port
from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.testing import UpProcess, porch_rules
from ruby_ctl.up_cli import PORTS
from ruby_natsx.apply import Action, apply_topology
from ruby_natsx.connection import NatsRefusedError, NatsSettings, connect
from ruby_natsx.status import fresh_ready
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT_SINK, ENGINE, EVENTS, STATUS, topology
from ruby_schemas.status import AuditSinkRecord, EngineRecord, read_record

URL = r"listening on (tls://127\.0\.0\.1:\d+)"
SERVICES = {
    "audit": "ruby-audit-sink",
    "hasim": "ruby-hasim",
    "gateway": "ruby-gateway",
    "engine": "ruby-engine",
}
PROCESSES = {"openbao", "nats-server", *SERVICES, "traefik"}
STOP_ORDER = ["traefik", "engine", "gateway", "hasim", "audit", "nats-server", "openbao"]


def descendants(up: UpProcess) -> dict[str, int]:
    """The PID of every process it started, by name, as the system sees them."""
    programs = {**{v: k for k, v in SERVICES.items()}, "nats-server": "nats-server"}
    programs["bao"] = "openbao"
    programs["traefik"] = "traefik"
    found: dict[str, int] = {}
    for child in psutil.Process(up.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # python, then the script; or a binary
            for arg in child.cmdline()[:2]:
                if name := programs.get(Path(arg).name):
                    found[name] = child.pid
    return found


def fixed_ports() -> dict[str, int]:
    """Free ports for every listener (OpenBao's cluster port is its API port + 1)."""
    while True:
        vault = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", vault + 1))
            except OSError:
                continue
        break
    return {
        "--nats-port": free_port(),
        "--vault-port": vault,
        "--ha-port": free_port(),
        "--gateway-port": free_port(),
        "--api-port": free_port(),
        "--api-http-port": free_port(),
    }


def bound_without_reuse(port: int) -> bool:
    """Whether a plain bind (no SO_REUSEADDR, the old free-port check) gets the port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_up_runs_the_secure_stack_and_starts_again_at_once_on_the_same_ports(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    state = tmp_path / "state"
    ports = fixed_ports()
    flags = [str(arg) for pair in ports.items() for arg in pair]
    first = start_up(state, porch_rules(tmp_path), *flags)
    first.read_until("Ruby Core is up")
    url = first.find(URL).group(1)
    assert url == f"tls://127.0.0.1:{ports['--nats-port']}"
    nats_pid = int(first.find(r"nats-server pid (\d+)").group(1))
    bao_pid = int(
        first.find(r"openbao pid (\d+) on http://127\.0\.0\.1:\d+ \(initialised").group(1)
    )
    assert first.find(r"bootstrap: \d+ changes")
    assert first.find(r"topology applied as operator: 11 created, 0 updated, 0 unchanged")
    keys = first.keys()

    with pytest.raises(NatsRefusedError):  # no anonymous client, not even on loopback
        await connect(NatsSettings(url=url, name="anonymous", ca_file=state / "pki" / "ca.pem"))
    nc = await connect_operator(operator_settings(first.operator_env()), name="test")
    js = nc.jetstream()
    topo = topology(Subjects())
    # Every object exists with exactly the declared configuration: applying changes nothing.
    assert {c.action for c in await apply_topology(js, topo, operator=True)} == {Action.UNCHANGED}
    marker = Subjects().ha_state("sensor.test_marker")  # no entity of the demo home
    await js.publish(marker, b"kept across restarts")
    await nc.close()

    # The services run too, each ready, in order: the audit sink, the demo home, the gateway,
    # the engine.
    readyz = first.find(r"gateway ready: (http://127\.0\.0\.1:\d+/readyz)").group(1)
    assert readyz == f"http://127.0.0.1:{ports['--gateway-port']}/readyz"
    pids_said = [
        m.group(1) for line in first.lines if (m := re.match(r"^rubyctl up: (\S+) pid", line))
    ]
    assert pids_said == ["openbao", "nats-server", *SERVICES, "traefik"], pids_said
    ready = [
        m.group(1) for line in first.lines if (m := re.match(r"^rubyctl up: (\S+) ready", line))
    ]
    assert ready == list(SERVICES), ready
    db = state / "audit" / "audit.db"
    assert first.find(rf"^rubyctl up: audit ready \(the audit sink, store {re.escape(str(db))}\)")
    assert first.find(rf"^rubyctl up:   audit     {re.escape(str(db))} \(the audit store\)")
    # The API's edge: its address said, and nothing opens without a token.
    api = first.find(r"^rubyctl up:   api       (https://127\.0\.0\.1:(\d+)/api/v1) \(Traefik")
    assert int(api.group(2)) == ports["--api-port"]
    ca = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
    async with aiohttp.ClientSession() as http, http.get(f"{api.group(1)}/states", ssl=ca) as reply:
        assert reply.status == 401
        assert reply.content_type == "application/problem+json"
    created = await asyncio.to_thread(  # the README's example: a token, then the states
        subprocess.run,
        [sys.executable, "-m", "ruby_ctl", "token", "create", "dash", "--scope", "read"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **first.operator_env()},
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    bearer = {"Authorization": f"Bearer {created.stdout.strip()}"}

    async def states() -> list[dict[str, object]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{api.group(1)}/states", ssl=ca, headers=bearer) as reply,
        ):
            return await reply.json() if reply.status == 200 else []

    await eventually(lambda: _nonempty(states()), message="the demo home's states through the API")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{api.group(1)}/rules", ssl=ca, headers=bearer) as reply,
    ):
        assert [rule["id"] for rule in (await reply.json())["rules"]] == ["porch_light"]
    admin = await asyncio.to_thread(  # the running gateway reads the DLQ with its own grants
        subprocess.run,
        [sys.executable, "-m", "ruby_ctl", "token", "create", "ops", "--scope", "admin"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **first.operator_env()},
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{api.group(1)}/dlq",
            ssl=ca,
            headers={"Authorization": f"Bearer {admin.stdout.strip()}"},
        ) as reply,
    ):
        assert reply.status == 200, await reply.text()
        assert (await reply.json())["next_after"] is None
    # Each process's PID is in its PID file: the processes that really run.
    pids = first.pids()
    assert pids == descendants(first), pids
    assert set(pids) == PROCESSES, pids
    for name in SERVICES:
        assert int(first.find(rf"{name} pid (\d+) started").group(1)) == pids[name]
    assert (nats_pid, bao_pid) == (pids["nats-server"], pids["openbao"])
    nc = await connect_operator(operator_settings(first.operator_env()), name="test")
    kv = await nc.jetstream().key_value(topo.bucket(STATUS).bucket)
    record = read_record(EngineRecord, (await kv.get(ENGINE)).value or b"", key=ENGINE)
    sink = read_record(AuditSinkRecord, (await kv.get(AUDIT_SINK)).value or b"", key=AUDIT_SINK)
    await nc.close()
    assert record.ready is True
    assert record.rules == 1
    assert record.refused_files == ()
    assert sink.ready is True
    assert sink.db == str(db)
    assert db.is_file()
    # Their output is on the console, each line prefixed with the process name.
    assert first.find(r"^gateway \| .*gateway running")
    assert first.find(r"^engine  \| .*engine running")
    assert first.find(r"^hasim   \| ruby-hasim: \d+ entities")
    assert first.find(r"^audit   \| .*audit sink running")
    assert "engine running" in (state / "logs" / "engine.log").read_text()

    assert first.interrupt() == 0
    # Stopped in reverse order of dependency, the engine first, each with its exit code.
    assert first.stopped() == [(name, 0) for name in STOP_ORDER]
    assert "audit sink stopped" in (state / "logs" / "audit.log").read_text()
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid), f"{name} (pid {pid}) outlived rubyctl up"
    assert first.pids() == {}, "PID files left behind"
    # The stop leaves connections in TIME_WAIT on nats-server's port: a plain bind fails there
    # (the old free-port check did, for a minute), SO_REUSEADDR and the servers do not.
    lingering = [flag for flag, p in ports.items() if not bound_without_reuse(p)]
    assert "--nats-port" in lingering, "nothing in TIME_WAIT: the second start proves nothing"

    # Started again at once on the same ports (connections left in TIME_WAIT do not stop it),
    # it reuses the state: same identities, nothing to create, the message kept.
    second = start_up(state, porch_rules(tmp_path), *flags)
    second.read_until("Ruby Core is up")
    assert second.find(r"openbao pid \d+ on http://127\.0\.0\.1:\d+ \(unsealed;")
    assert second.find(r"bootstrap: nothing changed")
    assert second.keys() == keys
    assert second.find(r"topology applied as operator: 0 created, 0 updated, 11 unchanged")
    assert second.find(URL).group(1) == url
    nc = await connect_operator(operator_settings(second.operator_env()), name="test")
    kept = await nc.jetstream().get_last_msg(topo.stream(EVENTS).name, marker)
    assert kept.data == b"kept across restarts"
    await nc.close()
    assert second.interrupt() == 0
    printed = "\n".join(first.lines + second.lines)
    root_token = json.loads((state / "openbao" / "init.json").read_text())["root_token"]
    assert root_token not in printed
    assert re.search(r"S[UAONCX][A-Z2-7]{55}", printed) is None, "a seed was printed"

    # `rubyctl bootstrap` on the bootstrapped installation: nothing changed.
    again = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ruby_ctl", "bootstrap", "--state-dir", str(state),
         "--vault-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert lines[-1] == "rubyctl bootstrap: nothing changed"
    assert "rubyctl bootstrap: OpenBao stopped (exit code 0)" in lines
    for identity, key in keys.items():
        assert f"rubyctl bootstrap: identity {identity}: nkey {key}" in lines
    started = re.search(r"local OpenBao from .* \(pid (\d+),", again.stdout)
    assert started is not None
    assert not psutil.pid_exists(int(started.group(1))), "bootstrap left its OpenBao running"


def test_up_says_why_when_nats_cannot_start(tmp_path: Path, start_up: type[UpProcess]) -> None:
    first = start_up(tmp_path / "a", porch_rules(tmp_path))
    first.read_until("Ruby Core is up")
    port = first.find(r"listening on tls://127\.0\.0\.1:(\d+)").group(1)
    clash = subprocess.run(
        [sys.executable, "-m", "ruby_ctl", "up", "--state-dir", str(tmp_path / "b"),
         "--nats-port", port, "--http-port", "off", "--vault-port", "0", "--ha-port", "0",
         "--gateway-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert clash.returncode == 1
    assert "nats-server did not start" in clash.stdout
    assert "address already in use" in clash.stdout
    assert "openbao pid" not in clash.stdout, "it should fail before starting anything"
    assert not (tmp_path / "b" / "openbao").exists()
    assert first.interrupt() == 0


def test_help_explains_up() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruby_ctl", "up", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Ctrl-C" in out
    assert "RUBY_NATS_PORT" in out
    assert "RUBY_VAULT_PORT" in out
    assert "restart" in out


def test_up_refuses_a_missing_rules_directory(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruby_ctl",
            "up",
            "--state-dir",
            str(tmp_path / "s"),
            "--rules",
            str(tmp_path / "nowhere"),
            "--nats-port",
            "0",
            "--http-port",
            "off",
            "--vault-port",
            "0",
            "--ha-port",
            "0",
            "--gateway-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert f"{tmp_path / 'nowhere'} is not a directory" in out.stdout
    assert "openbao pid" not in out.stdout


def test_a_child_is_drained_even_when_the_console_is_stuck(tmp_path: Path) -> None:
    """A console that does not keep up never stalls a child: lines beyond the backlog are
    left out of the console (and counted there), never out of the log file."""
    release = threading.Event()

    class Stuck(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(30)
            return super().write(text)

    stream = Stuck()
    console = Console("test", stream, backlog=10)
    lines = 50_000
    child = Child(
        "chatty",
        [sys.executable, "-c", f"for i in range({lines}): print('line', i)"],
        dict(os.environ),
        tmp_path / "chatty.log",
        console,
    )
    child.start()
    assert child.process is not None
    assert child.process.wait(timeout=20) == 0, "the child was blocked by its output"
    child.settle()
    release.set()
    console.close()
    assert len((tmp_path / "chatty.log").read_text().splitlines()) == lines
    assert child.tail()[-1] == f"line {lines - 1}"
    shown = stream.getvalue().splitlines()
    assert shown[0] == "chatty  | line 0"
    echoed = [int(line.rsplit(" ", 1)[1]) for line in shown if line.startswith("chatty  | ")]
    gaps = [
        re.fullmatch(r"\((\d+) lines of output not shown here: see the log files\)", line)
        for line in shown
        if not line.startswith("chatty  | ")
    ]
    assert gaps, "no note about the lines left out"
    assert all(gaps), shown
    assert echoed == sorted(echoed)
    assert len(echoed) + sum(int(gap.group(1)) for gap in gaps if gap) == lines


def test_only_a_fresh_ready_record_counts() -> None:
    start = datetime.now(UTC)
    after, before = start + timedelta(seconds=1), start - timedelta(seconds=1)

    def record(ready: object, updated: datetime) -> bytes:
        return json.dumps({"ready": ready, "updated": updated.isoformat()}).encode()

    assert fresh_ready(record(True, after), start)
    assert not fresh_ready(record(True, before), start), "left by an earlier run"
    assert not fresh_ready(record(False, after), start)
    assert not fresh_ready(record("yes", after), start)
    assert not fresh_ready(b"not json", start)
    assert not fresh_ready(b"[]", start)
    assert not fresh_ready(json.dumps({"ready": True, "updated": "noon"}).encode(), start)
    assert not fresh_ready(None, start)


def test_the_devcontainer_forwards_the_ports_rubyctl_up_listens_on() -> None:
    root = Path(__file__).resolve().parents[3]
    devcontainer = json.loads((root / ".devcontainer" / "devcontainer.json").read_text())
    assert set(devcontainer["forwardPorts"]) == {default for _, _, default, _ in PORTS}
    assert devcontainer["build"]["target"] == "dev"
    assert "FROM ${BASE_IMAGE} AS dev" in (root / "Dockerfile").read_text()
    assert devcontainer["postCreateCommand"] == "make sync"


async def _nonempty(found: Awaitable[list[dict[str, object]]]) -> bool:
    return bool(await found)
