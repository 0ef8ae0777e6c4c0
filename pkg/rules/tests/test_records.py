"""Timer records: one variant per kind; records stored by the engine before the variants
existed (one record with every field) still load, and a restored engine finishes their runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ruby_rules import load_text
from ruby_rules.engine import RecordError, RuleEngine, read_record
from ruby_rules.engine.ids import command_id

RULE = """
rules:
  - id: q
    description: queued with a delay
    mode: queued
    triggers:
      - {kind: state, entity_id: binary_sensor.m, to: "on", id: motion}
      - {kind: time, at: "22:00"}
      - {kind: state, entity_id: switch.w, to: "on", for: 2m}
    actions:
      - kind: wait_for
        trigger: {kind: event, event_type: zha_event, event_data: {button: 1}}
        timeout: 5m
      - kind: call
        service: light.turn_on
        target: {entity_id: light.a}
        data: {brightness_pct: 40}
"""
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

# Written by the engine before issue 13 (`TimerRecord.to_json` of one record with every field).
AT = (
    '{"kind":"at","rule_id":"q","deadline":"2026-11-20T22:00:00+00:00","trigger":{"kind":"t'
    'ime","id":"1","event_id":"at.q.1.2026-11-20T22:00:00+00:00","time":"2026-11-20T22:00:0'
    '0+00:00","entity_id":null,"from_state":null,"to_state":null,"event_type":null,"event_d'
    'ata":{},"correlation_id":null},"version":"be45d1a12f0bd6c6","trigger_index":1,"trigger'
    # pragma: allowlist nextline secret (a trigger hash: of today's trigger, so it stays armed)
    '_hash":"53bb5e13cdf06970","entity_id":null,"run_id":null,"status":"waiting","resume_af'
    'ter":null,"wait":false,"wait_until_time":false,"queued_seq":0,"file":"q.yaml","steps":'
    '[],"rule":null}'
)
WAITING = (
    '{"kind":"run","rule_id":"q","deadline":"2026-11-20T18:05:00+00:00","trigger":{"kind":"'
    'state","id":"motion","event_id":"m1","time":"2026-11-20T18:00:00+00:00","entity_id":"b'
    'inary_sensor.m","from_state":{"state":"off","attributes":{},"last_changed":"2026-11-20'
    'T18:00:00Z","last_updated":"2026-11-20T18:00:00Z"},"to_state":{"state":"on","attribute'
    's":{"friendly_name":"M"},"last_changed":"2026-11-20T18:00:00Z","last_updated":"2026-11'
    '-20T18:00:00Z"},"event_type":null,"event_data":{},"correlation_id":"c-1"},"version":"b'
    'e45d1a12f0bd6c6","trigger_index":0,"trigger_hash":"","entity_id":null,"run_id":"q-a9cc'
    'c660da45e92bc5cf","status":"waiting","resume_after":[0],"wait":true,"wait_until_time":'
    'false,"queued_seq":0,"file":"q.yaml","steps":[{"at":"2026-11-20T18:00:00+00:00","path"'
    ':"action.0","kind":"wait_for","result":"waiting, at most until 2026-11-20T18:05:00+00:'
    '00"}],"rule":{"id":"q","description":"queued with a delay","mode":"queued","triggers":'
    '[{"kind":"state","id":"motion","entity_id":["binary_sensor.m"],"to":["on"]},{"kind":"t'
    'ime","at":["22:00:00"]},{"kind":"state","entity_id":["switch.w"],"to":["on"],"for":120'
    '.0}],"conditions":[],"actions":[{"kind":"wait_for","trigger":{"kind":"event","event_ty'
    'pe":"zha_event","event_data":{"button":1}},"timeout":300.0,"continue_on_timeout":true}'
    ',{"kind":"call","service":"light.turn_on","target":{"entity_id":["light.a"]},"data":{"'
    'brightness_pct":40}}],"on_missed":{"policy":"run"},"backlog":{"policy":"latest"}}}'
)
QUEUED = (
    '{"kind":"run","rule_id":"q","deadline":null,"trigger":{"kind":"state","id":"motion","e'
    'vent_id":"m2","time":"2026-11-20T18:00:05+00:00","entity_id":"binary_sensor.m","from_s'
    'tate":{"state":"off","attributes":{},"last_changed":"2026-11-20T18:00:00Z","last_updat'
    'ed":"2026-11-20T18:00:00Z"},"to_state":{"state":"on","attributes":{},"last_changed":"2'
    '026-11-20T18:00:05Z","last_updated":"2026-11-20T18:00:05Z"},"event_type":null,"event_d'
    'ata":{},"correlation_id":null},"version":"be45d1a12f0bd6c6","trigger_index":0,"trigger'
    '_hash":"","entity_id":null,"run_id":"q-d7ea9b510c1aff35b319","status":"queued","resume'
    '_after":null,"wait":false,"wait_until_time":false,"queued_seq":1,"file":"q.yaml","step'
    's":[],"rule":{"id":"q","description":"queued with a delay","mode":"queued","triggers":'
    '[{"kind":"state","id":"motion","entity_id":["binary_sensor.m"],"to":["on"]},{"kind":"t'
    'ime","at":["22:00:00"]},{"kind":"state","entity_id":["switch.w"],"to":["on"],"for":120'
    '.0}],"conditions":[],"actions":[{"kind":"wait_for","trigger":{"kind":"event","event_ty'
    'pe":"zha_event","event_data":{"button":1}},"timeout":300.0,"continue_on_timeout":true}'
    ',{"kind":"call","service":"light.turn_on","target":{"entity_id":["light.a"]},"data":{"'
    'brightness_pct":40}}],"on_missed":{"policy":"run"},"backlog":{"policy":"latest"}}}'
)
FOR = (
    '{"kind":"for","rule_id":"q","deadline":"2026-11-20T18:02:00+00:00","trigger":{"kind":"'
    'state","id":"2","event_id":"w1","time":"2026-11-20T18:00:00+00:00","entity_id":"switch'
    '.w","from_state":{"state":"off","attributes":{},"last_changed":"2026-11-20T18:00:00Z",'
    '"last_updated":"2026-11-20T18:00:00Z"},"to_state":{"state":"on","attributes":{},"last_'
    'changed":"2026-11-20T18:00:00Z","last_updated":"2026-11-20T18:00:00Z"},"event_type":nu'
    'll,"event_data":{},"correlation_id":null},"version":"be45d1a12f0bd6c6","trigger_index"'
    # pragma: allowlist nextline secret (a trigger hash: of today's trigger, so it stays armed)
    ':2,"trigger_hash":"e8274af93e988425","entity_id":"switch.w","run_id":null,"status":"wa'
    'iting","resume_after":null,"wait":false,"wait_until_time":false,"queued_seq":0,"file":'
    '"q.yaml","steps":[],"rule":null}'
)


def test_records_of_old_load_as_their_variant() -> None:
    at, waiting, queued, armed = (read_record(raw.encode()) for raw in (AT, WAITING, QUEUED, FOR))
    assert at.kind == "at"
    assert at.key == "at.q.1"
    assert at.deadline == datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
    assert armed.kind == "for"
    assert armed.key == "for.q.2.switch.w"
    assert armed.entity_id == "switch.w"
    assert armed.trigger_hash == "e8274af93e988425"  # pragma: allowlist secret (a hash)
    assert waiting.kind == "run"
    assert waiting.status == "waiting"
    assert waiting.resume_after == (0,)
    assert waiting.wait
    assert not waiting.wait_until_time
    assert waiting.trigger.correlation_id == "c-1"
    assert waiting.trigger.to_state is not None
    assert waiting.trigger.to_state.attributes == {"friendly_name": "M"}
    assert [step.kind for step in waiting.steps] == ["wait_for"]
    assert waiting.rule.id == "q"
    assert waiting.program is not None  # compiled when read
    assert queued.kind == "run"
    assert queued.status == "queued"
    assert queued.deadline is None
    assert queued.queued_seq == 1


def test_a_record_round_trips_in_its_own_variant_only() -> None:
    for raw in (AT, WAITING, QUEUED, FOR):
        record = read_record(raw.encode())
        again = record.to_json()
        assert read_record(again) == record
        written = json.loads(again)
        old = json.loads(raw)
        assert {key: old[key] for key in written} == written  # same values, same JSON forms
    assert "rule" not in json.loads(read_record(FOR.encode()).to_json())
    assert "deadline" not in json.loads(read_record(QUEUED.encode()).to_json())


def test_a_restored_engine_finishes_the_runs_of_old_records() -> None:
    [rule] = load_text(RULE, "q.yaml").rules
    e = RuleEngine(tz=UTC)
    e.restore(read_record(raw.encode()) for raw in (AT, WAITING, QUEUED, FOR))
    e.set_rules([rule], T0)
    assert sorted(e.timers) == sorted(
        ["at.q.1", "for.q.2.switch.w", "run.q.q-a9ccc660da45e92bc5cf",
         "run.q.q-d7ea9b510c1aff35b319"]
    )  # fmt: skip
    at = T0 + timedelta(minutes=1)
    fx = e.on_event(event_id="z1", event_type="zha_event", data={"button": 1}, fired_at=at, now=at)
    # The paused run goes on with the id its first stretch had; the queued one starts.
    # It runs with the version it started with (its record's), whatever the rule's is today.
    started = json.loads(WAITING)["version"]
    assert [c.command_id for c in fx.commands] == [command_id("q", started, "m1", (1,))]
    assert [t.status for t in fx.traces] == ["waiting", "finished"]  # the queued one's first


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"rule": {"id": "q"}}, "rule"),  # a leftover that is not empty: refused
        ({"kind": "later"}, "kind"),
        ({"deadline": None}, "deadline"),
    ],
)
def test_an_unreadable_record_is_refused_with_the_field(
    change: dict[str, object], why: str
) -> None:
    raw = json.dumps({**json.loads(FOR), **change}).encode()
    with pytest.raises(RecordError, match=why):
        read_record(raw)
