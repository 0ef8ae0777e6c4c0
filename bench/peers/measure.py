"""The peers run's figures, as pure functions: mirror lags, percentiles, CPU, the table.

A system's lag for one source change is Home Assistant's own clock from that change's
``last_updated`` to the ``last_updated`` of the mirror change that copied it. Mirror changes
are matched in order: each source change takes the first mirror change after it with the same
state that no earlier source change took. A source change with no such mirror change within
the run is *missed* (a system that drops superseded changes, or falls behind, shows here).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from chaos.model import Call, Change


@dataclass(frozen=True)
class Lags:
    """One system's mirror lags over one run, in seconds, and the source changes missed."""

    seconds: tuple[float, ...]
    missed: int

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    @property
    def p99(self) -> float:
        return percentile(self.seconds, 99)

    @property
    def worst(self) -> float:
        return max(self.seconds, default=math.nan)


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def mirror_lags(sources: Sequence[Change], mirrors: Sequence[Change]) -> Lags:
    """Each source change's lag to the mirror change that copied it (see the module)."""
    ordered = sorted(mirrors, key=lambda c: c.at)
    lags: list[float] = []
    missed = 0
    taken = 0  # mirror changes before this index are taken or too early
    for source in sorted(sources, key=lambda c: c.at):
        while taken < len(ordered) and ordered[taken].at < source.at:
            taken += 1
        match = next(
            (i for i in range(taken, len(ordered)) if ordered[i].state == source.state), None
        )
        if match is None:
            missed += 1
            continue
        lags.append(ordered[match].at - source.at)
        taken = match + 1
    return Lags(tuple(lags), missed)


def call_lags(sources: Sequence[Change], calls: Sequence[Call], mirror: str) -> Lags:
    """Each source change's lag to Home Assistant receiving the call that copies it (its
    ``call_service`` event: ``turn_<state>`` on ``mirror``), matched in order as `mirror_lags`
    does: the system's own part of the mirror lag; the rest is Home Assistant running the
    service, the same for every system."""
    wanted = sorted((c for c in calls if mirror in c.entity_ids), key=lambda c: c.at)
    as_changes = [Change(mirror, c.service.removeprefix("turn_"), c.at) for c in wanted]
    return mirror_lags(sources, as_changes)


@dataclass(frozen=True)
class Hops:
    """Ruby Core's part of the mirror lag in two hops, over the runs its traces still hold."""

    to_engine: Lags
    """HA's change (``last_updated``, in the run's message id) -> the engine's ``call`` step
    (the gateway, EVENTS, the engine's pull, the rule: trigger, conditions, template)."""
    to_ha: Lags
    """The ``call`` step -> Home Assistant received the call (the engine's publishes, COMMANDS,
    the gateway's pull, the ledger's claim, the WebSocket)."""

    def line(self) -> str:
        parts = (("HA's change -> engine's call step", self.to_engine),
                 ("call step -> HA received the call", self.to_ha))  # fmt: skip
        shown = ", ".join(f"{label} p50 {ms(x.p50)} / p99 {ms(x.p99)}" for label, x in parts)
        return f"Ruby Core hop by hop ({len(self.to_ha.seconds)} runs): {shown}"


def _moment(text: object) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def ruby_hops(
    trace_lines: Iterable[str], audit_lines: Iterable[str], calls: Sequence[Call]
) -> Hops:
    """`Hops` from ``rubyctl rules trace RULE --json`` (one run per line) and ``rubyctl audit
    query --json``. A run's trigger names HA's change in its event id (``ha.<entity>.<HA's
    last_updated>``); its ``call`` step names the command, whose ``command.executed`` record
    names HA's context id, which HA's ``call_service`` event carries."""
    contexts: dict[str, str] = {}
    for line in audit_lines:
        record = _json(line)
        details = record.get("details")
        if record.get("action") == "command.executed" and isinstance(details, dict):
            command, context = details.get("command_id"), details.get("ha_context_id")
            if isinstance(command, str) and isinstance(context, str):
                contexts[command] = context
    call_at = {c.context_id: c.at for c in calls}
    to_engine: list[float] = []
    to_ha: list[float] = []
    for line in trace_lines:
        run = _json(line)
        trigger = run.get("trigger")
        trigger = trigger if isinstance(trigger, dict) else {}
        prefix = f"ha.{trigger.get('entity_id')}."
        event_id = str(trigger.get("event_id", ""))
        changed = _moment(event_id.removeprefix(prefix)) if event_id.startswith(prefix) else None
        steps = run.get("steps")
        call = next(
            (
                st
                for st in (steps if isinstance(steps, list) else [])
                if isinstance(st, dict) and st.get("command_id")
            ),
            None,
        )
        if changed is None or call is None or (called := _moment(call.get("at"))) is None:
            continue
        received = call_at.get(contexts.get(str(call.get("command_id")), ""))
        if received is None:
            continue
        to_engine.append(called - changed)
        to_ha.append(received - called)
    return Hops(Lags(tuple(to_engine), 0), Lags(tuple(to_ha), 0))


def _json(line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class Cpu:
    """CPU seconds (user + system) of named processes between two samples."""

    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def seconds(self, names: Sequence[str]) -> float:
        return sum(self.after.get(n, 0.0) - self.before.get(n, 0.0) for n in names)


@dataclass(frozen=True)
class Row:
    """One system at one rate."""

    system: str
    lags: Lags
    cpu_seconds: float | None
    """None for Home Assistant's own automation (its CPU is Home Assistant's)."""
    changes: int
    """Every ``state_changed`` Home Assistant fired during the run: what each system received."""
    to_call: Lags | None = None
    """Source change -> Home Assistant received the mirror's call (`call_lags`)."""

    @property
    def cpu_per_1000(self) -> float | None:
        if self.cpu_seconds is None or not self.changes:
            return None
        return self.cpu_seconds / self.changes * 1000


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def table(rate: float, seconds: float, rows: Sequence[Row]) -> list[str]:
    """The run at one rate, one line per system, as a Markdown table."""
    lines = [
        f"### {rate:g} source changes/s for {seconds:g} s "
        f"({rows[0].changes if rows else 0} state changes in Home Assistant)",
        "",
        "| system | p50 | p99 | max | mirrored / missed | to HA's call p50 / p99 | CPU s "
        "| CPU s per 1,000 changes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cpu = "(inside HA)" if row.cpu_seconds is None else f"{row.cpu_seconds:.2f}"
        per = row.cpu_per_1000
        lines.append(
            f"| {row.system} | {ms(row.lags.p50)} | {ms(row.lags.p99)} | {ms(row.lags.worst)} "
            f"| {len(row.lags.seconds)} / {row.lags.missed} "
            f"| {'-' if row.to_call is None else f'{ms(row.to_call.p50)} / {ms(row.to_call.p99)}'} "
            f"| {cpu} "
            f"| {'-' if per is None else f'{per:.2f}'} |"
        )
    return lines


def ratios(rows: Mapping[str, Row], ours: str, peer: str) -> str:
    """``ours`` against ``peer``: how many times the p50, p99 and CPU per change."""
    a, b = rows.get(ours), rows.get(peer)
    if a is None or b is None:
        return f"{ours} / {peer}: not both measured"
    parts = []
    for label, x, y in (
        ("p50", a.lags.p50, b.lags.p50),
        ("p99", a.lags.p99, b.lags.p99),
        ("CPU per change", a.cpu_per_1000, b.cpu_per_1000),
    ):
        ok = x is not None and y is not None and not math.isnan(x) and not math.isnan(y) and y > 0
        parts.append(f"{label} x{x / y:.2f}" if ok else f"{label} -")  # type: ignore[operator]
    return f"{ours} / {peer}: " + ", ".join(parts)


@dataclass(frozen=True)
class Goal:
    what: str
    met: bool | None
    """None: not measured in this run."""
    figure: str

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        return f"- {self.what}: {verdict} ({self.figure})"


def goals(by_rate: Mapping[float, Mapping[str, Row]], ours: str, peer: str) -> list[Goal]:
    """Issue 14's goals this run can judge: CPU per change at most the peer's, p50 below the
    peer's, and the quiet-machine latency bounds (20/s: p50 ≤ 3 ms, p99 ≤ 10 ms; 50/s: p99 ≤ 15
    ms). The latency bounds hold for a quiet machine: the caller prints the load beside them."""
    found: list[Goal] = []
    for rate, rows in sorted(by_rate.items()):
        a, b = rows.get(ours), rows.get(peer)
        if a is not None and b is not None:
            x, y = a.cpu_per_1000, b.cpu_per_1000
            found.append(
                Goal(
                    f"{rate:g}/s: CPU per change ≤ {peer}'s",
                    None if x is None or y is None else x <= y,
                    "-" if x is None or y is None else f"{x:.2f} vs {y:.2f} CPU s per 1,000",
                )
            )
            found.append(
                Goal(
                    f"{rate:g}/s: p50 below {peer}'s",
                    a.lags.p50 < b.lags.p50,
                    f"{ms(a.lags.p50)} vs {ms(b.lags.p50)}",
                )
            )
        if a is not None and rate == 20:
            found.append(
                Goal(
                    "20/s: p50 ≤ 3 ms and p99 ≤ 10 ms",
                    a.lags.p50 <= 0.003 and a.lags.p99 <= 0.010,
                    f"p50 {ms(a.lags.p50)}, p99 {ms(a.lags.p99)}",
                )
            )
        if a is not None and rate == 50:
            found.append(Goal("50/s: p99 ≤ 15 ms", a.lags.p99 <= 0.015, f"p99 {ms(a.lags.p99)}"))
    return found
