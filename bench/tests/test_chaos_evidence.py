"""The chaos run reads HA's events, the audit store and the engine's traces as they are printed;
its rules are Ruby Core rules the real loader accepts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from chaos.evidence import TraceCounts, audit_facts, call_from_event, change_from_event
from chaos.ha import Recorder
from chaos.home import REAL_PAIRS, SIM_PAIRS
from chaos.model import KINDS, Call, Change
from chaos.run import kill_plan, mirror_rules, mirrored_since, rule_id

from ruby_rules import load_text
from ruby_rules.processors.actions.call import CallActionConfig
from ruby_rules.processors.triggers.state import StateTriggerConfig

WHEN = "2026-12-03T21:36:12.339542+00:00"
AT = datetime(2026, 12, 3, 21, 36, 12, 339542, tzinfo=UTC).timestamp()


def test_a_state_changed_event_as_home_assistant_sends_it() -> None:
    event: dict[str, Any] = {
        "event_type": "state_changed",
        "data": {
            "entity_id": "input_boolean.d",
            "old_state": {"entity_id": "input_boolean.d", "state": "off"},
            "new_state": {
                "entity_id": "input_boolean.d",
                "state": "on",
                "attributes": {"editable": True},
                "last_changed": WHEN,
                "last_reported": WHEN,
                "last_updated": WHEN,
                "context": {"id": "01JEXAMPLE", "parent_id": None, "user_id": "u1"},
            },
        },
        "origin": "LOCAL",
        "time_fired": WHEN,
        "context": {"id": "01JEXAMPLE", "parent_id": None, "user_id": "u1"},
    }
    assert change_from_event(event) == Change("input_boolean.d", "on", AT, "01JEXAMPLE")
    removed = {**event, "data": {**event["data"], "new_state": None}}
    assert change_from_event(removed) is None


def test_a_call_service_event_with_a_list_or_one_entity() -> None:
    def event(entity_id: object) -> dict[str, object]:
        data = {"domain": "input_boolean", "service": "turn_on"}
        return {
            "event_type": "call_service",
            "data": {**data, "service_data": {"entity_id": entity_id}},
            "time_fired": WHEN,
            "context": {"id": "CTX"},
        }

    expected = Call("input_boolean", "turn_on", ("input_boolean.d",), "CTX", AT)
    assert call_from_event(event(["input_boolean.d"])) == expected
    assert call_from_event(event("input_boolean.d")) == expected
    assert call_from_event({"data": {}}) is None


def test_audit_facts_count_executions_per_command_and_their_contexts() -> None:
    def record(action: str, target: str, **details: object) -> str:
        reason = "superseded by a later change" if action == "command.refused" else ""
        return json.dumps(
            {"seq": 1, "action": action, "target": target, "reason": reason, "details": details}
        )

    lines = [
        record("command.executed", "input_boolean.turn_on", command_id="c1", ha_context_id="A"),
        record("command.executed", "input_boolean.turn_on", command_id="c1", ha_context_id="B"),
        record("command.executed", "input_boolean.turn_off", command_id="c2", ha_context_id=None),
        record("command.executed", "input_boolean.turn_off", command_id="c4", ha_context_id="B"),
        record("command.refused", "input_boolean.turn_off", command_id="c3"),
        record("rule.fired", "rule:chaos_c_on", command_ids=["c1"]),
        record("rule.fired", "rule:hallway_light_on", command_ids=["x"]),
        "not json",
    ]
    facts = audit_facts(lines, ["chaos_c_on", "chaos_c_off"])
    assert facts.executed == {"c1": 2, "c2": 1, "c4": 1}
    assert facts.executed_contexts == {"A", "B"}
    assert facts.shared_contexts == 1  # B: credited to c1 and c4
    assert facts.refused == {"c3": "superseded by a later change"}
    assert facts.fired == 1
    assert facts.actions == {"command.executed": 4, "command.refused": 1, "rule.fired": 2}


def test_trace_counts_find_runs_skipped_as_superseded() -> None:
    counts = TraceCounts()
    counts.add_runs(
        [
            json.dumps({"status": "ran", "reason": ""}),
            json.dumps({"status": "skipped", "reason": "Superseded by a later change of c"}),
            json.dumps({"status": "not run", "reason": "condition 0 false"}),
            "",
        ]
    )
    assert (counts.runs, counts.superseded) == (3, 1)
    assert counts.by_status == Counter({"ran": 1, "skipped": 1, "not run": 1})


def test_the_mirror_rules_load_in_the_engines_own_loader() -> None:
    for pairs in (REAL_PAIRS, SIM_PAIRS):
        loaded = load_text(mirror_rules(pairs), "chaos.yaml")
        assert loaded.ok, loaded.errors
        calls = {}
        for r in loaded.rules:
            trigger, action = r.config.triggers[0], r.config.actions[0]
            assert isinstance(trigger, StateTriggerConfig)
            assert isinstance(action, CallActionConfig)
            calls[r.config.id] = (trigger.to, action.service, action.target.entity_id)
        assert calls == {
            rule_id(p, state): ((state,), f"{p.mirror_domain}.turn_{state}", (p.mirror,))
            for p in pairs
            for state in ("on", "off")
        }


def test_the_kill_plan_spreads_kills_evenly_and_follows_the_seed() -> None:
    plan = kill_plan(20, seed=7)
    assert Counter(plan) == dict.fromkeys(KINDS, 5)
    assert kill_plan(20, seed=7) == plan
    assert kill_plan(20, seed=8) != plan
    assert Counter(kill_plan(6, seed=1)) == {
        "gateway": 2,
        "engine": 2,
        "audit_sink": 1,
        "nats-server": 1,
    }


def test_the_kill_loop_sees_mirroring_work_again_after_a_kill() -> None:
    pair = REAL_PAIRS[0]
    recorder = Recorder(frozenset({pair.source, pair.mirror}))

    def seen(*log: tuple[str, str, float]) -> None:
        recorder.changes.extend(Change(entity, state, at) for entity, state, at in log)

    seen((pair.source, "on", 5.0), (pair.mirror, "on", 5.01))  # before the kill: no proof
    assert not mirrored_since(recorder, [pair], since=10.0)
    seen((pair.source, "off", 11.0), (pair.mirror, "on", 11.2))  # a stale "on": wrong value
    seen((pair.source, "on", 12.0), (pair.mirror, "off", 12.1), (pair.mirror, "on", 13.5))
    assert not mirrored_since(recorder, [pair], since=10.0)  # "on" 1.5 s late, not on time
    seen((pair.source, "off", 14.0), (pair.mirror, "off", 14.02))
    assert mirrored_since(recorder, [pair], since=10.0)
