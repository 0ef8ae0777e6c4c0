"""The chaos run's report: a table per kind of kill and totals, every kill, the final states,
the audit store's and the engine's own counts beside HA's, the machine and the definitions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from chaos.analysis import FLAP_CHANGES, ON_TIME, TOTAL, Fate, Row, median_max
from chaos.evidence import SUPERSEDED, TraceCounts
from chaos.model import AuditFacts, Call, Kill, Pair


@dataclass(frozen=True)
class Final:
    """A mirror and its source once toggling stopped and the stack settled (or gave up)."""

    pair: Pair
    source: str
    mirror: str
    waited: float

    @property
    def right(self) -> bool:
        return self.source == self.mirror


@dataclass
class Outcome:
    """Everything the report shows."""

    home: str
    pairs: Sequence[Pair]
    machine: str
    versions: str
    seed: int
    rate: float
    started: float
    duration: float = 0.0
    sent: int = 0
    failed: int = 0
    toggler_late: float = 0.0
    kills: list[Kill] = field(default_factory=list)
    rows: dict[str, Row] = field(default_factory=dict)
    finals: list[Final] = field(default_factory=list)
    facts: AuditFacts = field(default_factory=AuditFacts)
    calls: list[Call] = field(default_factory=list)
    unclaimed: list[Call] = field(default_factory=list)
    traces: TraceCounts | None = None
    flap_within: float = 0.1
    window_grace: float = 5.0
    notes: list[str] = field(default_factory=list)
    stack_stopped: bool = False


COLUMNS = (
    ("kind", 12),
    ("kills", 5),
    ("down p50/max", 16),
    ("not back", 8),
    ("back e2e p50/max", 16),
    ("changes", 7),
    ("on time", 7),
    ("late", 5),
    ("skipped", 7),
    ("stale", 5),
    ("wrong-way", 9),
    ("flapping", 8),
    ("twice", 5),
)


def _row(row: Row) -> list[str]:
    return [
        row.kind,
        str(row.kills) if row.kills else "-",
        median_max(row.downtimes),
        str(row.not_back) if row.kills else "-",
        median_max(row.e2e),
        str(sum(row.fates.values())),
        str(row.fates[Fate.ON_TIME]),
        str(row.fates[Fate.LATE]),
        str(row.fates[Fate.SKIPPED]),
        str(row.fates[Fate.STALE]),
        str(row.wrong_way),
        str(row.bursts),
        str(row.twice),
    ]


def table(rows: dict[str, Row]) -> list[str]:
    """The figures, one line per kind of kill, the time outside kill windows, the total."""
    widths = [w for _, w in COLUMNS]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return (
            "  "
            + first.ljust(widths[0])
            + "".join("  " + c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))
        )

    out = [line([name for name, _ in COLUMNS])]
    for kind, row in rows.items():
        if kind == TOTAL:
            out.append("  " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
        out.append(line(_row(row)))
    return out


def _kill_line(kill: Kill, started: float) -> str:
    when = f"+{kill.at - started:7.1f} s  {kill.kind:<11}"
    if kill.pid is None:
        return f"  {when}  not killed: {kill.note}"
    back = (
        f"back after {kill.downtime:.2f} s"
        if kill.downtime is not None
        else f"NOT back ({kill.note or 'timeout'})"
    )
    restarts = f"; up said: {', '.join(kill.restarts)}" if kill.restarts else ""
    return f"  {when}  pid {kill.pid:<7}  {back}{restarts}"


def render(o: Outcome) -> list[str]:
    """The report, line by line."""
    mirrors = ", ".join(f"{p.source} -> {p.mirror}" for p in o.pairs)
    out = [
        "",
        f"chaos run against the {o.home}: {mirrors}",
        o.machine,
        o.versions,
        f"seed {o.seed}; {o.duration:.0f} s of toggling at {o.rate:g}/s: {o.sent} source "
        f"changes sent ({o.failed} failed; the toggler fell behind by {o.toggler_late:.2f} s "
        f"at most); kills made: {sum(k.pid is not None for k in o.kills)}",
        "",
        *table(o.rows),
        "",
        "kills (time from the start of toggling):",
        *(_kill_line(k, o.started) for k in o.kills),
        "",
        "final states (the stack had stopped: read once, not waited for):"
        if o.stack_stopped
        else "final states (toggling stopped; each mirror polled until it equals its source, "
        "30 s at most):",
    ]
    for f in o.finals:
        verdict = "right" if f.right else "WRONG"
        out.append(
            f"  {f.pair.mirror} = {f.mirror}, its source {f.pair.source} = {f.source}: "
            f"{verdict} (after {f.waited:.1f} s)"
        )
    out += ["", *_cross_checks(o), "", *(f"note: {n}" for n in o.notes)]
    out += ["", *definitions(o.flap_within, o.window_grace)]
    return out


def _cross_checks(o: Outcome) -> list[str]:
    facts = o.facts
    executed = sum(facts.executed.values())
    superseded = sum(SUPERSEDED in r.lower() for r in facts.refused.values())
    total = o.rows.get(TOTAL)
    skipped = total.fates[Fate.SKIPPED] + total.fates[Fate.STALE] if total else 0
    out = [
        "cross-checks:",
        f"  HA received {len(o.calls)} service calls for the mirrors; the audit store has "
        f"{executed} command.executed records ({len(facts.executed)} command ids), "
        f"{len(o.unclaimed)} calls are claimed by none, {facts.shared_contexts} contexts by "
        "more than one command",
        f"  audit store: rule.fired {facts.fired} (chaos rules), command.refused "
        f"{len(facts.refused)} ({superseded} as superseded); superseded per HA's log: {skipped}",
    ]
    for call in o.unclaimed[:10]:
        out.append(
            f"    unclaimed: +{call.at - o.started:.3f} s {call.domain}.{call.service} "
            f"{', '.join(call.entity_ids)} (context {call.context_id})"
        )
    if o.traces is not None:
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(o.traces.by_status.items()))
        out.append(
            f"  engine traces (the last runs it keeps per rule): {o.traces.runs} runs "
            f"({statuses or 'none'}), {o.traces.superseded} skipped as superseded"
        )
    actions = ", ".join(f"{a} {n}" for a, n in sorted(facts.actions.items()))
    out.append(f"  audit actions: {actions or 'none'}")
    return out


def definitions(flap_within: float, grace: float) -> list[str]:
    """What each column means (printed under the figures)."""
    return [
        "definitions:",
        f"  kind: the row counts what happened from each kill of that kind until {grace:g} s "
        "after it was back, both by 'down' and by 'back e2e' ('no kill': all other time)",
        "  down: kill -9 until rubyctl up said it was ready again (nats-server: until NATS "
        "greets a client and the gateway's /readyz is ready, or up's line)",
        "  back e2e: kill -9 until a source change made after it was reached on time",
        "  reached: the mirror changed to the source's new value, or, if it already showed it, "
        "HA received a call setting it to that value (showing it by chance is not reached)",
        f"  on time: reached within {ON_TIME:g} s and before the next source change; late: "
        "reached after that, still before the next source change",
        "  skipped: not reached before the source changed again (or the run ended), never "
        "shown later; stale: not reached in time, then shown once the source no longer had it",
        "  wrong-way: a mirror change to a value its source did not have at that moment",
        f"  flapping: bursts of {FLAP_CHANGES}+ changes of one mirror within "
        f"{flap_within * 1000:g} ms",
        "  twice: service calls HA received for a mirror that no command.executed record "
        "claims (by HA context id), plus command ids with more than one such record",
    ]
