"""The chaos run's verdicts on hand-made Home Assistant change logs (no stack, no clock)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from chaos.analysis import (
    BASELINE,
    TOTAL,
    Fate,
    analyse_pair,
    back_end_to_end,
    flap_window,
    flapping,
    kind_at,
    summarise,
    twice,
    windows,
)
from chaos.model import AuditFacts, Call, Change, Kill, Pair
from chaos.report import Final, Outcome, render

PAIR = Pair("input_boolean.c", "input_boolean.d")


def src(*log: tuple[float, str]) -> list[Change]:
    return [Change(PAIR.source, state, at) for at, state in log]


def mir(*log: tuple[float, str]) -> list[Change]:
    return [Change(PAIR.mirror, state, at, f"ctx-{at}") for at, state in log]


def call(service: str, at: float, entity: str = PAIR.mirror) -> Call:
    return Call("input_boolean", service, (entity,), f"call-{at}", at)


def fates(
    sources: list[Change], mirrors: list[Change], end: float = 60.0, calls: Sequence[Call] = ()
) -> list[Fate]:
    result = analyse_pair(PAIR, ("off", "off"), sources, mirrors, end, calls=calls)
    return [f.fate for f in result.fates]


def test_a_mirror_that_follows_within_milliseconds_is_on_time_and_never_wrong() -> None:
    sources = src((0.0, "on"), (0.2, "off"), (0.4, "on"))
    mirrors = mir((0.006, "on"), (0.207, "off"), (0.405, "on"))
    result = analyse_pair(PAIR, ("off", "off"), sources, mirrors, 10.0)
    assert [f.fate for f in result.fates] == [Fate.ON_TIME] * 3
    assert [f.mirrored_at for f in result.fates] == [0.006, 0.207, 0.405]
    assert result.wrong_way == []
    assert result.bursts == []


def test_a_value_shown_after_a_second_but_before_the_next_change_is_late() -> None:
    assert fates(src((0.0, "on"), (5.0, "off")), mir((1.5, "on"), (5.01, "off"))) == [
        Fate.LATE,
        Fate.ON_TIME,
    ]


def test_changes_made_while_the_engine_was_down_are_superseded_and_skipped() -> None:
    # Five changes while nothing mirrors; after recovery only the latest is applied (late).
    # The mirror showing "off" while its source was off again is no credit: nothing called.
    sources = src((0.0, "on"), (0.2, "off"), (0.4, "on"), (0.6, "off"), (0.8, "on"))
    result = analyse_pair(PAIR, ("off", "off"), sources, mir((2.5, "on")), 10.0)
    assert [f.fate for f in result.fates] == [Fate.SKIPPED] * 4 + [Fate.LATE]
    assert result.wrong_way == []


def test_a_stale_burst_is_wrong_way_changes_and_one_flapping_burst() -> None:
    # All four stale commands replayed within 6 ms, three seconds late (issue 11, item 2).
    sources = src((0.0, "on"), (0.2, "off"), (0.4, "on"), (0.6, "off"))
    mirrors = mir((3.000, "on"), (3.002, "off"), (3.004, "on"), (3.006, "off"))
    result = analyse_pair(PAIR, ("off", "off"), sources, mirrors, 10.0)
    assert [m.at for m in result.wrong_way] == [3.000, 3.004]  # "on" while the source was off
    # The replays of "on" are put down to the last "on" before them; the last change (off) is
    # reached by the burst's last "off", late.
    assert [f.fate for f in result.fates] == [Fate.SKIPPED, Fate.SKIPPED, Fate.STALE, Fate.LATE]
    assert [(b.start, b.end, b.changes) for b in result.bursts] == [(3.000, 3.006, 4)]


def test_a_mirror_left_wrong_at_the_end_is_not_on_time_for_the_last_change() -> None:
    # Issue 11, item 1: the last change (off) never reached the mirror.
    result = fates(src((0.0, "on"), (0.5, "off")), mir((0.01, "on")), end=40.0)
    assert result == [Fate.ON_TIME, Fate.SKIPPED]


def test_a_value_the_mirror_already_showed_is_reached_by_a_call_for_it_only() -> None:
    # "on" was superseded at once; the engine skipped it and called turn_off for "off", which
    # changed nothing in HA (the mirror was off) but reached it.
    sources = src((0.0, "on"), (0.1, "off"))
    called = [call("turn_on", 0.05, PAIR.source), call("turn_off", 0.104)]
    result = analyse_pair(PAIR, ("off", "off"), sources, [], 5.0, calls=called)
    assert [(f.fate, f.mirrored_at) for f in result.fates] == [
        (Fate.SKIPPED, None),
        (Fate.ON_TIME, 0.104),
    ]
    assert fates(sources, [], 5.0, calls=[call("turn_off", 2.0)]) == [Fate.SKIPPED, Fate.LATE]
    assert fates(sources, [], 5.0) == [Fate.SKIPPED, Fate.SKIPPED]  # nothing called


def test_flapping_needs_three_changes_within_the_window_and_merges_overlaps() -> None:
    def changes(*times: float) -> list[Change]:
        return [Change(PAIR.mirror, "on" if i % 2 else "off", t) for i, t in enumerate(times)]

    assert [b.changes for b in flapping("m", changes(0.0, 0.05, 0.09))] == [3]
    assert flapping("m", changes(0.0, 0.06, 0.12)) == []
    assert flapping("m", changes(0.0, 0.05)) == []
    bursts = flapping("m", changes(0.0, 0.01, 0.02, 0.03, 0.5, 0.51, 0.52, 1.0))
    assert [(b.start, b.changes) for b in bursts] == [(0.0, 4), (0.5, 3)]
    # A mirror that follows its source every 200 ms is never a burst.
    assert flapping("m", changes(*(i * 0.2 for i in range(50)))) == []


def test_the_flap_window_stays_under_half_a_sources_toggle_interval() -> None:
    assert flap_window(10, 2) == pytest.approx(0.1)
    assert flap_window(40, 2) == pytest.approx(0.025)


def test_calls_no_executed_record_claims_are_the_ones_executed_twice() -> None:
    facts = AuditFacts(executed={"cmd-1": 1}, executed_contexts=frozenset({"A"}))
    claimed = Call("input_boolean", "turn_on", (PAIR.mirror,), "A", 1.0)
    again = Call("input_boolean", "turn_on", (PAIR.mirror,), "B", 1.1)
    toggler = Call("input_boolean", "turn_off", (PAIR.source,), "C", 1.2)
    assert twice([claimed, again, toggler], [PAIR.mirror], facts) == [again]


def test_a_kills_window_lasts_until_it_is_back_both_for_up_and_end_to_end() -> None:
    sources = src((1.0, "on"), (11.0, "off"), (14.0, "on"), (40.0, "off"))
    mirrors = mir((1.01, "on"), (11.01, "off"), (15.0, "on"), (40.01, "off"))
    fates = analyse_pair(PAIR, ("off", "off"), sources, mirrors, 99.0).fates
    engine = Kill("engine", 100, at=10.0, back_at=12.0)  # mirrored again at 11.01: up's 12 wins
    gateway = Kill("gateway", 101, at=13.0, back_at=13.5)  # but mirrored again only at 15.0
    lost = Kill("nats-server", 200, at=30.0)  # up never said it was back: 60 s + 5
    not_made = Kill("audit_sink", None, at=20.0, note="no process of ours to kill")
    spans = windows([engine, gateway, lost, not_made], fates, timeout=60)
    assert [(w.kind, w.start, w.end) for w in spans] == [
        ("engine", 10.0, 17.0),
        ("gateway", 13.0, 20.0),
        ("nats-server", 30.0, 95.0),
    ]
    assert [kind_at(t, spans) for t in (9.9, 12.0, 13.0, 19.0, 20.1, 31.0)] == [
        BASELINE,
        "engine",
        "gateway",
        "gateway",
        BASELINE,
        "nats-server",
    ]
    # Nothing was reached on time after a kill at 41: its window has no end.
    late = windows([Kill("engine", 1, at=41.0, back_at=42.0)], fates, timeout=60)
    assert kind_at(500.0, late) == "engine"


def test_each_anomaly_is_counted_in_the_window_of_the_kill_it_happened_in() -> None:
    engine = Kill("engine", 100, at=10.0, back_at=12.0)  # back e2e at 13.51: until 18.51
    lost = Kill("nats-server", 200, at=30.0)  # never back: 30 .. 30 + 60 + 5
    not_made = Kill("gateway", None, at=19.0, note="no process of ours to kill")
    kills = [engine, lost]
    sources = src((5.0, "on"), (11.0, "off"), (13.0, "on"), (20.0, "off"))
    mirrors = mir((5.01, "on"), (13.5, "off"), (13.51, "on"), (20.01, "off"))
    pair = analyse_pair(PAIR, ("off", "off"), sources, mirrors, 25.0)
    unclaimed = [Call("input_boolean", "turn_on", (PAIR.mirror,), "X", 11.5)]
    rows = summarise([pair], [*kills, not_made], unclaimed, AuditFacts(), timeout=60)
    assert list(rows) == ["gateway", "engine", "audit_sink", "nats-server", BASELINE, TOTAL]
    row = rows["engine"]
    assert (row.kills, row.downtimes, row.not_back, row.e2e) == (1, [2.0], 0, [3.51])
    # "off" at 11 was shown only at 13.5, when the source was "on" again: stale, wrong-way;
    # "on" at 13 was reached at 13.51.
    assert (row.fates[Fate.STALE], row.fates[Fate.ON_TIME], row.wrong_way) == (1, 1, 1)
    assert row.twice == 1
    assert rows[BASELINE].fates[Fate.ON_TIME] == 2  # incl. off at 20: no gateway kill made
    assert rows["gateway"].kills == 0
    assert rows["nats-server"].not_back == 1
    total = rows[TOTAL]
    assert (total.kills, sum(total.fates.values()), total.twice) == (2, 4, 1)


def test_back_end_to_end_is_the_first_change_after_the_kill_mirrored_on_time() -> None:
    sources = src((1.0, "on"), (11.0, "off"), (12.0, "on"))
    mirrors = mir((1.01, "on"), (12.3, "off"), (12.31, "on"))
    pair = analyse_pair(PAIR, ("off", "off"), sources, mirrors, 20.0)
    # "off" at 11 was shown only after the source had moved on: not back yet at 12.3.
    assert back_end_to_end(Kill("gateway", 1, at=10.0), pair.fates) == pytest.approx(2.31)
    assert back_end_to_end(Kill("gateway", 1, at=15.0), pair.fates) is None


def test_the_report_shows_each_kind_a_wrong_final_state_and_each_unclaimed_call() -> None:
    kills = [Kill("engine", 100, at=10.0, back_at=12.0)]
    pair = analyse_pair(PAIR, ("off", "off"), src((5.0, "on")), mir((5.01, "on")), 20.0)
    again = Call("input_boolean", "turn_on", (PAIR.mirror,), "CTX-B", 11.5)
    outcome = Outcome("simulator", [PAIR], "machine: test", "versions: test", 1, 10.0, 10.0)
    outcome.kills = kills
    outcome.unclaimed = [again]
    outcome.rows = summarise([pair], kills, [again], AuditFacts(), timeout=60)
    outcome.finals = [Final(PAIR, source="on", mirror="off", waited=30.2)]
    text = "\n".join(render(outcome))
    engine = next(line for line in text.splitlines() if line.startswith("  engine "))
    assert engine.split()[-1] == "1"  # the unclaimed call, in the engine's window
    assert "input_boolean.d = off, its source input_boolean.c = on: WRONG" in text
    assert "unclaimed: +1.500 s input_boolean.turn_on input_boolean.d (context CTX-B)" in text
    assert "+    0.0 s  engine       pid 100      back after 2.00 s" in text
