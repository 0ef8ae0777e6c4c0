"""Run traces: the engine's stored JSON reads back, and writes back as it was written."""

from __future__ import annotations

import json
from typing import Any

from ruby_schemas.traces import RunTrace, TraceRecord

# What the engine wrote before traces were typed (the status key engine.trace.<rule>).
STORED = """{"rule_id": "hallway_light_on", "runs": [
 {"run_id": "hallway_light_on-0de948bcfd5beffaae2a", "rule_id": "hallway_light_on",
  "version": "0123456789abcdef", "file": "hallway.yaml",
  "trigger": {"kind": "state", "id": "motion", "event_id": "01J0", "time":
   "2026-11-20T18:00:00+00:00", "entity_id": "binary_sensor.hallway_motion", "from": null,
   "to": "on"},
  "updated": "2026-11-20T18:00:01.250000+00:00", "status": "waiting", "reason": "delay",
  "steps": [
   {"at": "2026-11-20T18:00:01.250000+00:00", "path": "condition.0", "kind": "numeric_state",
    "result": "true"},
   {"at": "2026-11-20T18:00:01.250000+00:00", "path": "action.1.0.0", "kind": "call",
    "result": "sent light.turn_on", "command_id": "cmd-176cc6ae572f46c416f870e5e8ac7ada"},
   {"at": "2026-11-20T18:00:01.250000+00:00", "path": "action.2", "kind": "publish",
    "result": "published lit", "message_id": "evt-0f"},
   {"at": "2026-11-20T18:01:01.250000+00:00", "path": "resume", "kind": "timer",
    "result": "timer due"}],
  "command_ids": ["cmd-176cc6ae572f46c416f870e5e8ac7ada"]},
 {"run_id": "", "rule_id": "hallway_light_on", "version": "0123456789abcdef",
  "file": "hallway.yaml",
  "trigger": {"kind": "event", "id": "0", "event_id": "01J1", "time":
   "2026-11-20T18:05:00+00:00", "event_type": "zha_event"},
  "updated": "2026-11-20T18:05:00+00:00", "status": "ignored",
  "reason": "mode single: a run is in flight", "steps": [], "command_ids": []},
 {"run_id": "r-1", "rule_id": "hallway_light_on", "version": "0123456789abcdef",
  "file": "hallway.yaml",
  "trigger": {"kind": "time", "id": "0", "event_id": "at.x.0.2026-11-20T22:00:00+00:00",
   "time": "2026-11-20T22:00:00+00:00"},
  "updated": "2026-11-20T22:00:00+00:00", "status": "finished", "reason": "",
  "steps": [], "command_ids": []}]}"""


def test_a_stored_trace_record_reads_and_writes_back_unchanged() -> None:
    raw: dict[str, Any] = json.loads(STORED)
    record = TraceRecord.model_validate_json(STORED)
    assert record.model_dump(mode="json", by_alias=True) == raw
    first = record.runs[0]
    assert first.trigger.entity_id == "binary_sensor.hallway_motion"
    assert first.trigger.from_ is None
    assert first.steps[1].command_id == "cmd-176cc6ae572f46c416f870e5e8ac7ada"
    assert first.steps[2].message_id == "evt-0f"
    assert record.runs[1].trigger.event_type == "zha_event"


def test_a_reader_ignores_what_a_newer_engine_adds() -> None:
    run: dict[str, Any] = json.loads(STORED)["runs"][2]
    newer = {**run, "duration_ms": 12, "steps": [{**json.loads(STORED)["runs"][0]["steps"][0],
                                                   "detail": "x"}]}  # fmt: skip
    trace = RunTrace.model_validate(newer)
    assert trace.status == "finished"
    assert "duration_ms" not in trace.to_json()
    assert trace.to_json()["steps"][0] == json.loads(STORED)["runs"][0]["steps"][0]
