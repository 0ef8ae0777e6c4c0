"""The chaos run's verdicts, from Home Assistant's change log alone (plus the audit store).

Pure functions over recorded `Change` / `Call` lists: no I/O, no clock. The definitions (the
report prints them too):

- a source change is **reached** when its mirror changes to the new value, or, if the mirror
  already shows it, when Home Assistant receives a call to set the mirror to it (``turn_on`` /
  ``turn_off``; a mirror that merely happened to show it, with nothing calling, is not reached);
- **on time**: reached within `ON_TIME` seconds and before the source changed again;
- **late**: reached only after `ON_TIME`, still before the source changed again;
- **superseded, skipped**: not reached before the source changed again (or the run ended), and
  the mirror never took the value afterwards either (what the "latest" backlog policy should do);
- **superseded, applied stale**: as above, but the mirror did take the value later, when the
  source no longer had it;
- a **wrong-way change** is a mirror change to a value its source did not have at that moment;
- a **flapping burst** is `FLAP_CHANGES` or more changes of one mirror within `FLAP_WITHIN`
  seconds (overlapping ones merged into one burst);
- a call **executed twice** is a ``call_service`` of a mirror whose context id no
  ``command.executed`` record claims (a command called once more after its first call's outcome
  was lost), plus every command id with more than one ``command.executed`` record.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from chaos.model import KINDS, AuditFacts, Call, Change, Kill, Pair

ON_TIME = 1.0
"""Seconds within which a mirror must show its source's new value to be on time."""
FLAP_CHANGES = 3
FLAP_WITHIN = 0.1
"""A mirror changing `FLAP_CHANGES` times within this many seconds is a flapping burst."""
GRACE = 5.0
"""Seconds after a recovery that still belong to its kill's window."""
BASELINE = "no kill"
TOTAL = "total"


class Fate(StrEnum):
    ON_TIME = "on time"
    LATE = "late"
    SKIPPED = "superseded, skipped"
    STALE = "superseded, applied stale"


@dataclass(frozen=True)
class SourceFate:
    """What became of one source change; ``mirrored_at``: when it was reached (None if it
    never was while the source held it)."""

    change: Change
    fate: Fate
    mirrored_at: float | None = None


@dataclass(frozen=True)
class Burst:
    mirror: str
    start: float
    end: float
    changes: int


@dataclass(frozen=True)
class PairAnalysis:
    pair: Pair
    fates: list[SourceFate]
    wrong_way: list[Change]
    bursts: list[Burst]


class Timeline:
    """An entity's changes in time order, with its state before the first one."""

    def __init__(self, changes: Iterable[Change], initial: str) -> None:
        self.changes = sorted(changes, key=lambda c: c.at)
        self.times = [c.at for c in self.changes]
        self.initial = initial

    def state_at(self, at: float) -> str:
        """The state at time ``at`` (a change at ``at`` counts)."""
        i = bisect.bisect_right(self.times, at)
        return self.changes[i - 1].state if i else self.initial

    def next_to(self, state: str, after: float, before: float) -> Change | None:
        """The first change to ``state`` strictly between ``after`` and ``before``."""
        i = bisect.bisect_right(self.times, after)
        while i < len(self.changes) and self.times[i] < before:
            if self.changes[i].state == state:
                return self.changes[i]
            i += 1
        return None

    def last_to(self, state: str, at: float) -> int | None:
        """The index of the last change to ``state`` at or before ``at``."""
        i = bisect.bisect_right(self.times, at)
        while i > 0:
            i -= 1
            if self.changes[i].state == state:
                return i
        return None


SERVICE_STATE = {"turn_on": "on", "turn_off": "off"}
"""The state a mirror call sets."""


def analyse_pair(
    pair: Pair,
    initial: tuple[str, str],
    sources: Iterable[Change],
    mirrors: Iterable[Change],
    end: float,
    *,
    calls: Iterable[Call] = (),
    on_time: float = ON_TIME,
    flap_within: float = FLAP_WITHIN,
) -> PairAnalysis:
    """Classify every source change of ``pair`` observed until ``end``.

    ``initial`` is (source, mirror) state before the first change of either list; ``calls``
    the ``call_service`` events HA received (those not for this mirror are ignored).
    """
    src = Timeline(sources, initial[0])
    mir = Timeline(mirrors, initial[1])
    settings = Timeline(  # the calls to set the mirror, as the states they set
        (
            Change(pair.mirror, SERVICE_STATE[c.service], c.at, c.context_id)
            for c in calls
            if pair.mirror in c.entity_ids and c.service in SERVICE_STATE
        ),
        initial[1],
    )
    wrong_way = [m for m in mir.changes if src.state_at(m.at) != m.state]
    stale_for = {i for m in wrong_way if (i := src.last_to(m.state, m.at)) is not None}
    fates = []
    for i, change in enumerate(src.changes):
        until = src.times[i + 1] if i + 1 < len(src.times) else end
        reached = [m.at for m in (mir.next_to(change.state, change.at, until),) if m is not None]
        if mir.state_at(change.at) == change.state:  # already shown: reached by a call for it
            call = settings.next_to(change.state, change.at, until)
            if call is not None and mir.state_at(call.at) == change.state:
                reached.append(call.at)
        if reached:
            at = min(reached)
            fate = Fate.ON_TIME if at - change.at <= on_time else Fate.LATE
            fates.append(SourceFate(change, fate, at))
        else:
            fates.append(SourceFate(change, Fate.STALE if i in stale_for else Fate.SKIPPED))
    return PairAnalysis(
        pair, fates, wrong_way, flapping(pair.mirror, mir.changes, within=flap_within)
    )


def flapping(
    mirror: str,
    changes: Sequence[Change],
    *,
    within: float = FLAP_WITHIN,
    count: int = FLAP_CHANGES,
) -> list[Burst]:
    """The bursts of ``count`` or more changes within ``within`` seconds (merged if they
    overlap)."""
    times = sorted(c.at for c in changes)
    marked = [False] * len(times)
    for i in range(len(times) - count + 1):
        if times[i + count - 1] - times[i] <= within:
            for j in range(i, i + count):
                marked[j] = True
    bursts: list[Burst] = []
    i = 0
    while i < len(times):
        if not marked[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(times) and marked[j + 1] and times[j + 1] - times[j] <= within:
            j += 1
        bursts.append(Burst(mirror, times[i], times[j], j - i + 1))
        i = j + 1
    return bursts


def twice(calls: Iterable[Call], mirrors: Iterable[str], facts: AuditFacts) -> list[Call]:
    """The mirror calls Home Assistant received that no ``command.executed`` record claims."""
    watched = set(mirrors)
    return [
        c
        for c in calls
        if watched.intersection(c.entity_ids) and c.context_id not in facts.executed_contexts
    ]


def flap_window(rate: float, pairs: int) -> float:
    """`FLAP_WITHIN`, or half a source's toggle interval if that is shorter: a mirror
    following its source correctly must never look like a burst."""
    return min(FLAP_WITHIN, pairs / rate / 2)


@dataclass
class Row:
    """The report's figures for one kind of kill (or for the time outside every kill window)."""

    kind: str
    kills: int = 0
    downtimes: list[float] = field(default_factory=list)
    not_back: int = 0
    e2e: list[float] = field(default_factory=list)
    fates: dict[Fate, int] = field(default_factory=lambda: dict.fromkeys(Fate, 0))
    wrong_way: int = 0
    bursts: int = 0
    twice: int = 0

    def add(self, other: Row) -> None:
        self.kills += other.kills
        self.downtimes += other.downtimes
        self.not_back += other.not_back
        self.e2e += other.e2e
        for fate, n in other.fates.items():
            self.fates[fate] += n
        self.wrong_way += other.wrong_way
        self.bursts += other.bursts
        self.twice += other.twice


def window_end(kill: Kill, timeout: float, grace: float = GRACE) -> float:
    """The earliest a kill's window ends: ``grace`` seconds after it was back (or gave up)."""
    back = kill.back_at if kill.back_at is not None else kill.at + timeout
    return back + grace


@dataclass(frozen=True)
class Window:
    """The time a kill's effects belong to it: from the kill until ``grace`` seconds after it
    was back, and after a change made after it was reached on time again (never: no end)."""

    kind: str
    start: float
    end: float


def windows(
    kills: Iterable[Kill], fates: Sequence[SourceFate], timeout: float, grace: float = GRACE
) -> list[Window]:
    """The window of each kill made (one without a PID was not made)."""
    found = []
    for kill in kills:
        if kill.pid is None:
            continue
        e2e = back_end_to_end(kill, fates)
        end = (
            math.inf
            if e2e is None
            else max(window_end(kill, timeout, grace), kill.at + e2e + grace)
        )
        found.append(Window(kill.kind, kill.at, end))
    return found


def kind_at(at: float, windows: Iterable[Window]) -> str:
    """The kind of the kill whose window holds ``at`` (the latest such kill), or `BASELINE`."""
    found = BASELINE
    for window in windows:
        if window.start <= at <= window.end:
            found = window.kind
    return found


def back_end_to_end(kill: Kill, fates: Iterable[SourceFate]) -> float | None:
    """Seconds from the kill until a source change made after it was reached on time."""
    times = [
        f.mirrored_at
        for f in fates
        if f.change.at > kill.at and f.fate is Fate.ON_TIME and f.mirrored_at is not None
    ]
    return min(times) - kill.at if times else None


def summarise(
    pairs: Sequence[PairAnalysis],
    kills: Sequence[Kill],
    extra_calls: Sequence[Call],
    facts: AuditFacts,
    *,
    timeout: float,
    grace: float = GRACE,
) -> dict[str, Row]:
    """One `Row` per kind of kill, one for `BASELINE` and the `TOTAL`, in that order.

    Only kills that were made count (and open a window); one without a PID was not made.
    """
    kills = [k for k in kills if k.pid is not None]
    rows = {kind: Row(kind) for kind in (*KINDS, BASELINE)}
    all_fates = [f for p in pairs for f in p.fates]
    spans = windows(kills, all_fates, timeout, grace)
    for kill in kills:
        row = rows[kill.kind]
        row.kills += 1
        if kill.downtime is None:
            row.not_back += 1
        else:
            row.downtimes.append(kill.downtime)
        if (e2e := back_end_to_end(kill, all_fates)) is not None:
            row.e2e.append(e2e)

    def where(at: float) -> Row:
        return rows[kind_at(at, spans)]

    for p in pairs:
        for f in p.fates:
            where(f.change.at).fates[f.fate] += 1
        for m in p.wrong_way:
            where(m.at).wrong_way += 1
        for b in p.bursts:
            where(b.start).bursts += 1
    for call in extra_calls:
        where(call.at).twice += 1
    total = Row(TOTAL)
    for row in rows.values():
        total.add(row)
    total.twice += sum(n - 1 for n in facts.executed.values() if n > 1)
    return {**rows, TOTAL: total}


def median_max(values: Sequence[float]) -> str:
    """``1.20 / 2.31 s``, or ``-`` for none."""
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} / {max(values):.2f} s"
