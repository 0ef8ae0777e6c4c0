"""The engine end to end: simulator → gateway → EVENTS → engine → COMMANDS → gateway → simulator.

Real nats-server, real gateway and engine code, the simulated home; rules in a temp directory.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from ruby_engine.engine import Engine
from ruby_engine.testing import running_engine
from ruby_hasim.server import Simulator
from ruby_natsx.server import NatsServer
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT, COMMANDS, EVENTS, STATUS, Topology
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode
from ruby_schemas.status import RulesRecord, read_record
from ruby_schemas.traces import TraceRecord


def calls(hasim: Simulator, domain: str, service: str, entity: str) -> int:
    return hasim.calls[(domain, service, entity)]


async def test_motion_after_dark_becomes_one_light_call(
    engine: Engine, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    hasim.set_state("sensor.outdoor_illuminance", "10")
    hasim.set_state("light.hallway", "off")
    hasim.set_state("binary_sensor.hallway_motion", "on")
    await eventually(lambda: hasim.states["light.hallway"].state == "on", message="light on")
    assert calls(hasim, "light", "turn_on", "light.hallway") == 1
    assert hasim.states["light.hallway"].attributes.get("brightness") is not None
    # The firing is audited, linked to the triggering state change and the command it sent.
    audit = await js.get_last_msg(
        topology_applied.stream(AUDIT).name,
        topology_applied.subjects.audit("engine", "rule_fired"),
    )
    fired = decode(audit.data or b"")
    assert isinstance(fired.data, AuditRecordV1)
    assert fired.data.target == "rule:hallway_light_on"
    [command_id] = fired.data.details["command_ids"]  # type: ignore[index,misc,str-unpack]
    [trace] = engine.status.traces("hallway_light_on")
    assert trace.command_ids == (command_id,)
    motion = await js.get_last_msg(
        topology_applied.stream(EVENTS).name,
        topology_applied.subjects.ha_state("binary_sensor.hallway_motion"),
    )
    assert fired.data.correlation_id == decode(motion.data or b"").correlation_id
    # What the engine writes for `rubyctl rules status|trace` is what rubyctl reads.
    written = engine.status.rules_record().model_dump_json()
    rules = read_record(RulesRecord, written, key="engine.rules")
    assert rules.rules["hallway_light_on"].runs == 1
    assert rules.rules["hallway_light_on"].last_status == "finished"
    stored = {"rule_id": "hallway_light_on", "runs": [trace.to_json()]}
    runs = TraceRecord.model_validate(stored).runs
    assert runs[0].trigger.to == "on"
    assert [step.kind for step in runs[0].steps] == ["numeric_state", "call"]


async def test_the_for_timer_turns_the_light_off_once_after_quiet(
    engine: Engine, hasim: Simulator
) -> None:
    hasim.set_state("light.hallway", "on")
    hasim.set_state("binary_sensor.hallway_motion", "on")
    hasim.set_state("binary_sensor.hallway_motion", "off")
    await eventually(lambda: hasim.states["light.hallway"].state == "off", message="light off")
    assert calls(hasim, "light", "turn_off", "light.hallway") == 1
    await eventually(lambda: not engine.core.timers, message="timer cleared")


async def test_a_redelivered_trigger_calls_home_assistant_once(
    engine: Engine, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    hasim.set_state("switch.fan", "off")
    hasim.set_state("input_boolean.guest_mode", "on")
    await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")
    stream = topology_applied.stream(EVENTS).name
    subject = topology_applied.subjects.ha_state("input_boolean.guest_mode")
    stored = await js.get_last_msg(stream, subject)
    for copy in range(3):  # the same event stored again: the engine handles it three more times
        await js.publish(subject, stored.data or b"", headers={"Nats-Msg-Id": f"again-{copy}"})

    async def drained() -> bool:
        info = await js.consumer_info(stream, "engine")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    await eventually(drained, message="the engine handled every copy")
    record = engine.status.rules_record().rules["fan_on_with_guests"]
    assert record.runs == 4  # the original and three copies: four runs...
    [trace] = engine.status.traces("fan_on_with_guests")  # ...of one run id
    assert trace.trigger.event_id == decode(stored.data or b"").id
    assert len(trace.command_ids) == 1  # the same command id each time
    commands = topology_applied.stream(COMMANDS).name
    assert (await js.stream_info(commands)).state.last_seq == 1  # stored once, ever
    assert calls(hasim, "switch", "turn_on", "switch.fan") == 1


async def test_a_broken_rule_file_leaves_the_others_and_its_last_good_version_running(
    engine: Engine,
    hasim: Simulator,
    rules_dir: Path,
    nc: Client,
    topology_applied: Topology,
    fan_text: str,
) -> None:
    (rules_dir / "fan.yaml").write_text(fan_text.replace("kind: call", "kind: cal"))
    await eventually(lambda: "fan.yaml" in engine.status.rules_record().refused_files,
                     message="refusal visible")  # fmt: skip
    [error] = engine.status.rules_record().refused_files["fan.yaml"]
    assert error.startswith("fan.yaml:8:")
    assert "fan_on_with_guests" in engine.core.rules  # the last good version still runs
    (rules_dir / "broken.yaml").write_text("rules: [ {id: x\n")
    hasim.set_state("switch.fan", "off")
    hasim.set_state("input_boolean.guest_mode", "on")
    await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")
    hasim.set_state("sensor.outdoor_illuminance", "5")
    hasim.set_state("binary_sensor.hallway_motion", "on")
    await eventually(lambda: hasim.states["light.hallway"].state == "on", message="light on")
    kv = await nc.jetstream().key_value(topology_applied.bucket(STATUS).bucket)
    await eventually(lambda: _refused(kv), message="status record shows both refusals")
    audit = await nc.jetstream().get_last_msg(
        topology_applied.stream(AUDIT).name,
        topology_applied.subjects.audit("engine", "rule_rejected"),
    )
    record = decode(audit.data or b"").data
    assert isinstance(record, AuditRecordV1)
    assert record.outcome == "failed"
    assert "kept running" in record.reason


async def _refused(kv: object) -> bool:
    try:
        entry = await kv.get("engine.rules")  # type: ignore[attr-defined]
    except KeyNotFoundError:
        return False
    record = read_record(RulesRecord, entry.value or b"", key="engine.rules")
    return set(record.refused_files) == {"fan.yaml", "broken.yaml"}


async def test_hot_reload_adds_changes_and_removes_exactly_the_affected_rules(
    engine: Engine,
    hasim: Simulator,
    rules_dir: Path,
    nc: Client,
    topology_applied: Topology,
    fan_text: str,
) -> None:
    before = dict(engine.core.rules)
    (rules_dir / "fan.yaml").write_text(fan_text.replace("switch.fan", "switch.coffee_maker"))
    await eventually(
        lambda: (
            engine.core.rules["fan_on_with_guests"].version != before["fan_on_with_guests"].version
        ),
        message="fan rule changed",
    )
    assert engine.core.rules["hallway_light_on"] is before["hallway_light_on"]
    (rules_dir / "hallway.yaml").unlink()
    await eventually(lambda: set(engine.core.rules) == {"fan_on_with_guests"}, message="removed")
    hasim.set_state("switch.coffee_maker", "off")
    hasim.set_state("input_boolean.guest_mode", "on")
    await eventually(lambda: hasim.states["switch.coffee_maker"].state == "on", message="new")
    js = nc.jetstream()
    stream, subjects = topology_applied.stream(EVENTS).name, topology_applied.subjects
    unloaded = await js.get_last_msg(stream, subjects.rule("hallway_light_off", "unloaded"))
    assert decode(unloaded.data or b"").data.reason == "removed"  # type: ignore[attr-defined]
    changed = await js.get_last_msg(stream, subjects.rule("fan_on_with_guests", "loaded"))
    replaced = decode(changed.data or b"").data.replaced_version  # type: ignore[attr-defined]
    assert replaced == before["fan_on_with_guests"].version


async def test_a_nats_server_restart_loses_neither_a_pending_timer_nor_later_events(
    engine: Engine, hasim: Simulator, nats_server: NatsServer
) -> None:
    hasim.set_state("light.hallway", "on")
    hasim.set_state("binary_sensor.hallway_motion", "on")
    hasim.set_state("binary_sensor.hallway_motion", "off")
    await eventually(lambda: bool(engine.core.timers), message="the for timer armed")
    await asyncio.to_thread(nats_server.restart)  # the timer falls due while it restarts
    await eventually(lambda: hasim.states["light.hallway"].state == "off", message="light off")
    hasim.set_state("switch.fan", "off")
    hasim.set_state("input_boolean.guest_mode", "on")
    await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")
    assert calls(hasim, "light", "turn_off", "light.hallway") == 1
    assert calls(hasim, "switch", "turn_on", "switch.fan") == 1


async def test_recent_runs_stay_visible_across_an_engine_restart(
    gateway: object,
    hasim: Simulator,
    nc: Client,
    topology_applied: Topology,
    rules_dir: Path,
) -> None:
    subjects = topology_applied.subjects
    async with running_engine(nc, subjects, rules_dir) as first:
        hasim.set_state("switch.fan", "off")
        hasim.set_state("input_boolean.guest_mode", "on")
        await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")
        [run] = first.status.traces("fan_on_with_guests")
        await first.status.flush()
    async with running_engine(nc, subjects, rules_dir) as second:
        assert second.status.traces("fan_on_with_guests") == [run]
        record = second.status.rules_record().rules["fan_on_with_guests"]
        assert record.runs == 1
        assert record.last_status == "finished"
    # A stored run that no longer reads as one is dropped; the others are kept as stored.
    kv = await nc.jetstream().key_value(topology_applied.bucket(STATUS).bucket)
    stored = json.loads((await kv.get("engine.trace.fan_on_with_guests")).value or b"")
    stored["runs"] = [{"run_id": "broken"}, *stored["runs"]]
    await kv.put("engine.trace.fan_on_with_guests", json.dumps(stored).encode())
    async with running_engine(nc, subjects, rules_dir) as third:
        assert third.status.traces("fan_on_with_guests") == [run]
        written = json.loads(third.status.trace_record("fan_on_with_guests"))
        assert written == {**stored, "runs": stored["runs"][1:]}


async def test_counts_in_a_rules_record_written_before_the_contract_are_taken_back(
    nc: Client, topology_applied: Topology, rules_dir: Path
) -> None:
    """An engine upgraded past issue 13 reads the ``engine.rules`` record its predecessor
    wrote (``""`` for a rule that never ran); an unreadable one is only history: ignored."""
    kv = await nc.jetstream().key_value(topology_applied.bucket(STATUS).bucket)
    row = {
        "file": "fan.yaml", "where": "fan.yaml:2:5", "version": "0123456789abcdef",
        "mode": "single", "runs": 5, "failed": 2, "last_status": "failed",
        "last_reason": "boom", "last_run": "2026-12-04T07:02:33.123456+00:00",
    }  # fmt: skip
    never = {**row, "runs": 0, "failed": 0, "last_status": "", "last_reason": "", "last_run": ""}
    old = {
        "updated": "2026-12-04T07:02:33.123456+00:00",
        "rules": {"fan_on_with_guests": row, "hallway_light_on": never},
        "refused_files": {},
    }
    await kv.put("engine.rules", json.dumps(old).encode())
    async with running_engine(nc, topology_applied.subjects, rules_dir) as engine:
        rules = engine.status.rules_record().rules
    fan, hallway = rules["fan_on_with_guests"], rules["hallway_light_on"]
    assert (fan.runs, fan.failed, fan.last_status, fan.last_reason) == (5, 2, "failed", "boom")
    assert fan.last_run is not None
    assert fan.last_run.isoformat() == "2026-12-04T07:02:33.123456+00:00"
    assert (hallway.runs, hallway.last_status, hallway.last_run) == (0, "", None)

    await kv.put("engine.rules", json.dumps({**old, "rules": {"fan_on_with_guests": {}}}).encode())
    async with running_engine(nc, topology_applied.subjects, rules_dir) as engine:
        assert engine.status.ready
        assert engine.status.rules_record().rules["fan_on_with_guests"].runs == 0
