"""The peers run's figures: lags matched in order, missed changes, CPU per change, goals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from chaos.model import Call, Change, Pair
from peers.appdaemon import READY_LINE, TOKEN_VARIABLE, configure
from peers.measure import (
    Cpu,
    Lags,
    Row,
    call_lags,
    goals,
    mirror_lags,
    percentile,
    ratios,
    ruby_hops,
    table,
)


def changes(entity: str, *timed: tuple[float, str]) -> list[Change]:
    return [Change(entity, state, at) for at, state in timed]


def test_each_source_change_takes_the_next_mirror_change_with_its_state() -> None:
    sources = changes("s", (0.0, "on"), (0.05, "off"), (0.10, "on"))
    # The mirror lags more than a toggle's period: each copy lands after the next toggle.
    mirrors = changes("m", (0.12, "on"), (0.17, "off"), (0.22, "on"))
    lags = mirror_lags(sources, mirrors)
    assert lags.seconds == pytest.approx((0.12, 0.12, 0.12))
    assert lags.missed == 0


def test_a_source_change_never_copied_is_missed_and_no_earlier_mirror_change_counts() -> None:
    sources = changes("s", (1.0, "on"), (2.0, "off"), (3.0, "on"))
    mirrors = changes("m", (0.5, "on"), (1.01, "on"), (3.02, "on"))  # the "off" was skipped
    lags = mirror_lags(sources, mirrors)
    assert lags.seconds == pytest.approx((0.01, 0.02))
    assert lags.missed == 1


def test_percentiles_are_nearest_rank_and_nan_when_empty() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert math.isnan(percentile([], 99))
    assert math.isnan(Lags((), 3).p50)


def test_cpu_per_thousand_changes_and_the_ratio_to_the_peer() -> None:
    cpu = Cpu(before={"r/gateway": 1.0, "r/engine": 2.0}, after={"r/gateway": 2.0, "r/engine": 2.5})
    ours = Row("Ruby", Lags((0.010, 0.020), 0), cpu.seconds(["r/gateway", "r/engine"]), 500)
    peer = Row("AD", Lags((0.005, 0.010), 0), 0.5, 500)
    own = Row("HA", Lags((0.001,), 0), None, 500)
    assert ours.cpu_per_1000 == pytest.approx(3.0)
    assert own.cpu_per_1000 is None
    said = ratios({"Ruby": ours, "AD": peer}, "Ruby", "AD")
    assert "p50 x2.00" in said
    assert "CPU per change x3.00" in said
    assert ratios({"Ruby": ours}, "Ruby", "AD") == "Ruby / AD: not both measured"
    rendered = "\n".join(table(20, 30, [own, ours, peer]))
    assert "| HA | 1.0 ms |" in rendered
    assert "(inside HA)" in rendered
    assert "| Ruby | 15.0 ms | 20.0 ms | 20.0 ms | 2 / 0 | - | 1.50 | 3.00 |" in rendered


def test_goals_say_met_or_not_with_their_figures() -> None:
    fast = Row("Ruby", Lags((0.002, 0.002, 0.009), 0), 0.4, 1000)
    slow = Row("AD", Lags((0.010, 0.011), 0), 1.0, 1000)
    judged = {g.what: g for g in goals({20: {"Ruby": fast, "AD": slow}}, "Ruby", "AD")}
    assert judged["20/s: CPU per change ≤ AD's"].met is True
    assert judged["20/s: p50 below AD's"].met is True
    assert judged["20/s: p50 ≤ 3 ms and p99 ≤ 10 ms"].met is True
    judged = {g.what: g for g in goals({50: {"Ruby": slow, "AD": fast}}, "Ruby", "AD")}
    assert judged["50/s: CPU per change ≤ AD's"].met is False
    assert judged["50/s: p99 ≤ 15 ms"].met is True
    assert "NOT met" in judged["50/s: p50 below AD's"].line()


def test_the_appdaemon_configuration_carries_no_token(tmp_path: Path) -> None:
    conf = tmp_path / "ad"
    configure(conf, "http://127.0.0.1:8123", Pair("input_boolean.e", "input_boolean.motion"))
    yaml_text = (conf / "appdaemon.yaml").read_text()
    assert f"token: !env_var {TOKEN_VARIABLE}" in yaml_text
    assert "ha_url: http://127.0.0.1:8123" in yaml_text
    app = (conf / "apps" / "mirror.py").read_text()
    compile(app, "mirror.py", "exec")
    assert READY_LINE in app
    assert "input_boolean" not in app
    assert "source: input_boolean.e" in (conf / "apps" / "apps.yaml").read_text()


def test_the_call_lag_matches_each_source_change_to_the_call_copying_it() -> None:
    sources = changes("input_boolean.s", (1.0, "on"), (2.0, "off"), (3.0, "on"))
    calls = [
        Call("input_boolean", "turn_on", ("input_boolean.m",), "c1", 1.004),
        Call("input_boolean", "turn_on", ("input_boolean.other",), "c2", 2.001),  # not ours
        Call("input_boolean", "turn_off", ("input_boolean.m",), "c3", 2.005),
        Call("input_boolean", "turn_on", ("input_boolean.m",), "c4", 3.006),
    ]
    lags = call_lags(sources, calls, "input_boolean.m")
    assert lags.seconds == pytest.approx((0.004, 0.005, 0.006))
    assert lags.missed == 0
    row = Row("Ruby", Lags((0.01,), 0), 1.0, 10, lags)
    assert "| 5.0 ms / 6.0 ms |" in "\n".join(table(20, 1, [row]))


def test_ruby_core_hops_follow_a_run_from_has_change_to_has_call() -> None:
    run = {
        "rule_id": "mirror_on",
        "trigger": {
            "kind": "state",
            "entity_id": "input_boolean.c",
            "event_id": "ha.input_boolean.c.2026-12-04T14:11:01.100000+00:00",
            "time": "2026-12-04T14:11:01.103000+00:00",
        },
        "steps": [
            {"at": "2026-12-04T14:11:01.103500+00:00", "kind": "call", "command_id": "cmd-1"}
        ],
    }
    unmatched = {**run, "steps": [{"at": "2026-12-04T14:11:02+00:00", "command_id": "cmd-9"}]}
    audit = [
        json.dumps({"action": "rule.fired", "details": {"command_id": "cmd-1"}}),
        json.dumps(
            {"action": "command.executed", "details": {"command_id": "cmd-1", "ha_context_id": "X"}}
        ),
        "not json",
    ]
    calls = [Call("input_boolean", "turn_on", ("input_boolean.d",), "X", 1796393461.1055)]
    hops = ruby_hops([json.dumps(run), json.dumps(unmatched), "{}"], audit, calls)
    assert hops.to_engine.seconds == pytest.approx((0.0035,), abs=1e-6)
    assert hops.to_ha.seconds == pytest.approx((0.002,), abs=1e-4)
    assert "1 runs" in hops.line()
