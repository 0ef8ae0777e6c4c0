"""The rule engine without NATS: triggers, conditions, modes, durable timers, deterministic ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ruby_rules import load_dir, load_text
from ruby_rules.engine import Effects, RuleEngine, read_record
from ruby_rules.model import Rule
from ruby_schemas.ha_events import EntityState

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)  # a Friday, after dusk


def st(state: str, at: datetime = T0, **attributes: Any) -> EntityState:
    return EntityState(state=state, attributes=attributes, last_changed=at, last_updated=at)


def rules(text: str) -> tuple[Rule, ...]:
    result = load_text(text, "t.yaml")
    assert result.ok, result.errors
    return result.rules


def engine(loaded: tuple[Rule, ...], **states: EntityState) -> RuleEngine:
    e = RuleEngine(tz=UTC)
    e.set_states({entity.replace("__", "."): s for entity, s in states.items()})
    e.set_rules(loaded, T0)
    return e


def change(
    e: RuleEngine, entity: str, old: str | None, new: str, at: datetime, **attrs: Any
) -> Effects:
    before = None if old is None else st(old, at - timedelta(minutes=1))
    return e.on_state_changed(
        event_id=f"ha.{entity}.{at.isoformat()}",
        entity_id=entity,
        old=before,
        new=st(new, at, **attrs),
        now=at,
    )


def calls(fx: Effects) -> list[str]:
    return [f"{c.domain}.{c.service} {sorted(c.target.get('entity_id', []))}" for c in fx.commands]


def fire_due(e: RuleEngine, now: datetime) -> Effects:
    total = Effects()
    for key in e.due(now):
        total.extend(e.fire(key, now))
    return total


def hallway() -> tuple[Rule, ...]:
    return tuple(r for r in load_dir(RULES_DIR).rules if r.file == "hallway.yaml")


def test_motion_after_dusk_turns_the_light_on_once_per_event() -> None:
    e = engine(hallway(), sensor__outdoor_illuminance=st("12"), light__hallway=st("off"))
    fx = change(e, "binary_sensor.hallway_motion", "off", "on", T0)
    assert calls(fx) == ["light.turn_on ['light.hallway']"]
    assert fx.commands[0].data == {"brightness_pct": 60}
    assert [r.what for r in fx.rule_events] == ["fired"]
    again = change(e, "binary_sensor.hallway_motion", "off", "on", T0)
    assert [c.command_id for c in again.commands] == [c.command_id for c in fx.commands]


def test_daylight_condition_blocks_and_the_trace_says_why() -> None:
    e = engine(hallway(), sensor__outdoor_illuminance=st("800"))
    fx = change(e, "binary_sensor.hallway_motion", "off", "on", T0)
    assert fx.commands == []
    [trace] = fx.traces
    assert trace.status == "not_run"
    assert "condition 0 (numeric_state) false" in trace.reason


def test_for_timer_fires_after_five_quiet_minutes_and_is_cancelled_by_motion() -> None:
    e = engine(hallway(), light__hallway=st("on"))
    armed = change(e, "binary_sensor.hallway_motion", "on", "off", T0)
    assert list(armed.timers) == ["for.hallway_light_off.0.binary_sensor.hallway_motion"]
    [note] = armed.traces  # the trace says what is armed, and until when
    assert note.status == "armed"
    assert "binary_sensor.hallway_motion is off; fires at 2026-11-20T18:05:00" in note.reason
    assert e.next_deadline() == T0 + timedelta(minutes=5)
    assert not fire_due(e, T0 + timedelta(minutes=4)).commands
    cancel = change(e, "binary_sensor.hallway_motion", "off", "on", T0 + timedelta(minutes=4))
    assert cancel.timers == {"for.hallway_light_off.0.binary_sensor.hallway_motion": None}
    [disarmed] = [t for t in cancel.traces if t.rule_id == "hallway_light_off"]
    assert disarmed.status == "disarmed"
    assert "changed to on before" in disarmed.reason
    change(e, "binary_sensor.hallway_motion", "on", "off", T0 + timedelta(minutes=6))
    assert not fire_due(e, T0 + timedelta(minutes=10)).commands
    fx = fire_due(e, T0 + timedelta(minutes=11))
    assert calls(fx) == ["light.turn_off ['light.hallway']"]
    assert e.timers == {}


def test_for_recheck_against_the_projection_refuses_a_changed_entity() -> None:
    e = engine(hallway(), light__hallway=st("on"))
    change(e, "binary_sensor.hallway_motion", "on", "off", T0)
    later = T0 + timedelta(minutes=5)
    moved = {"binary_sensor.hallway_motion": st("on", T0 + timedelta(minutes=2))}
    fx = Effects()
    for key in e.due(later):
        fx.extend(e.fire(key, later, projection=moved))
    assert fx.commands == []
    assert fx.traces[0].status == "not_run"


def test_a_restarted_engine_fires_a_stored_timer_with_the_same_command_id() -> None:
    first = engine(hallway(), light__hallway=st("on"))
    armed = change(first, "binary_sensor.hallway_motion", "on", "off", T0)
    stored = [read_record(r.to_json()) for r in armed.timers.values() if r is not None]
    uninterrupted = fire_due(first, T0 + timedelta(minutes=5))

    second = engine(hallway(), light__hallway=st("on"), binary_sensor__hallway_motion=st("off"))
    second.restore(stored)
    resumed = fire_due(second, T0 + timedelta(minutes=5, seconds=3))
    assert [c.command_id for c in resumed.commands] == [
        c.command_id for c in uninterrupted.commands
    ]
    assert len(resumed.commands) == 1


def test_on_missed_max_lateness_skips_a_timer_far_past_its_deadline() -> None:
    e = engine(hallway(), light__hallway=st("on"))
    change(e, "binary_sensor.hallway_motion", "on", "off", T0)
    fx = fire_due(e, T0 + timedelta(hours=2))
    assert fx.commands == []
    assert fx.traces[-1].status == "skipped"
    e2 = engine(hallway(), light__hallway=st("on"))
    change(e2, "binary_sensor.hallway_motion", "on", "off", T0)
    assert calls(fire_due(e2, T0 + timedelta(minutes=50))) == ["light.turn_off ['light.hallway']"]


DELAYED = """
rules:
  - id: pulse
    description: on, wait, off
    mode: {mode}
    {max}
    triggers:
      - kind: state
        entity_id: input_boolean.go
        to: "on"
    actions:
      - kind: call
        service: switch.turn_on
        target: {{entity_id: switch.pump}}
      - kind: delay
        duration: 10m
      - kind: call
        service: switch.turn_off
        target: {{entity_id: switch.pump}}
"""


def pulse(mode: str, max_: int | None = None) -> RuleEngine:
    text = DELAYED.format(mode=mode, max="" if max_ is None else f"max: {max_}")
    return engine(rules(text))


def go(e: RuleEngine, minute: int) -> Effects:
    return change(e, "input_boolean.go", "off", "on", T0 + timedelta(minutes=minute))


def test_delay_pauses_the_run_in_a_timer_and_resumes_it() -> None:
    e = pulse("single")
    first = go(e, 0)
    assert calls(first) == ["switch.turn_on ['switch.pump']"]
    [(key, record)] = first.timers.items()
    assert key.startswith("run.pulse.")
    assert record is not None
    assert record.deadline == T0 + timedelta(minutes=10)
    done = fire_due(e, T0 + timedelta(minutes=10))
    assert calls(done) == ["switch.turn_off ['switch.pump']"]
    assert done.timers == {key: None}
    assert done.traces[-1].status == "finished"


def test_single_ignores_restart_cancels_queued_waits_parallel_overlaps() -> None:
    single = pulse("single")
    go(single, 0)
    assert go(single, 1).traces[-1].status == "ignored"

    restart = pulse("restart")
    go(restart, 0)
    fx = go(restart, 1)
    assert [t.status for t in fx.traces] == ["cancelled", "waiting"]
    assert len([k for k in restart.timers if k.startswith("run.")]) == 1

    queued = pulse("queued", 1)
    go(queued, 0)
    assert go(queued, 1).traces[-1].status == "queued"
    assert go(queued, 2).traces[-1].status == "ignored"
    fx = fire_due(queued, T0 + timedelta(minutes=10))
    assert calls(fx) == ["switch.turn_off ['switch.pump']", "switch.turn_on ['switch.pump']"]

    parallel = pulse("parallel", 2)
    go(parallel, 0)
    assert calls(go(parallel, 1)) == ["switch.turn_on ['switch.pump']"]
    assert go(parallel, 2).traces[-1].status == "ignored"


WAIT = """
rules:
  - id: fan
    description: fan until cool
    triggers:
      - {kind: state, entity_id: input_boolean.go, to: "on"}
    actions:
      - {kind: call, service: switch.turn_on, target: {entity_id: switch.fan}}
      - kind: wait_for
        trigger: {kind: numeric_state, entity_id: sensor.t, below: 23}
        timeout: 1h
        continue_on_timeout: %s
      - {kind: call, service: switch.turn_off, target: {entity_id: switch.fan}}
"""


def test_wait_for_resumes_on_its_trigger_or_times_out() -> None:
    e = engine(rules(WAIT % "true"))
    go(e, 0)
    assert change(e, "sensor.t", "25", "24", T0 + timedelta(minutes=5)).commands == []
    cooled = change(e, "sensor.t", "24", "22", T0 + timedelta(minutes=6))
    assert calls(cooled) == ["switch.turn_off ['switch.fan']"]
    assert e.timers == {}

    timeout_continues = engine(rules(WAIT % "true"))
    go(timeout_continues, 0)
    fx = fire_due(timeout_continues, T0 + timedelta(hours=1))
    assert calls(fx) == ["switch.turn_off ['switch.fan']"]

    timeout_stops = engine(rules(WAIT % "false"))
    go(timeout_stops, 0)
    fx = fire_due(timeout_stops, T0 + timedelta(hours=1))
    assert fx.commands == []
    assert fx.traces[-1].status == "stopped"


def test_time_trigger_arms_a_timer_and_fires_at_its_time() -> None:
    coffee = tuple(r for r in load_dir(RULES_DIR).rules if r.id == "coffee_on_weekday_mornings")
    e = engine(coffee, input_boolean__guest_mode=st("off"), input_boolean__vacation=st("off"))
    saturday = datetime(2026, 11, 21, 6, 45, tzinfo=UTC)
    assert e.next_deadline() == saturday
    weekend = fire_due(e, saturday)
    assert weekend.commands == []
    assert "condition 0 (time) false" in weekend.traces[0].reason
    assert not fire_due(e, saturday + timedelta(days=1)).commands
    monday = saturday + timedelta(days=2)
    assert e.next_deadline() == monday
    fx = fire_due(e, monday)
    assert calls(fx) == ["switch.turn_on ['switch.coffee_maker']"]
    assert e.next_deadline() == monday + timedelta(minutes=30)
    assert calls(fire_due(e, monday + timedelta(minutes=30))) == [
        "switch.turn_off ['switch.coffee_maker']"
    ]
    assert e.next_deadline() == monday + timedelta(days=1)


def test_a_run_in_flight_finishes_with_the_version_it_started_with() -> None:
    e = pulse("single")
    go(e, 0)
    changed = rules(
        DELAYED.format(mode="single", max="").replace("switch.turn_off", "light.turn_off")
    )
    e.set_rules(changed, T0 + timedelta(minutes=1))
    assert calls(fire_due(e, T0 + timedelta(minutes=10))) == ["switch.turn_off ['switch.pump']"]
    assert calls(go(e, 11)) == ["switch.turn_on ['switch.pump']"]
    assert calls(fire_due(e, T0 + timedelta(minutes=21))) == ["light.turn_off ['switch.pump']"]


def test_an_event_reaches_only_the_rules_indexed_under_its_entity() -> None:
    many = "rules:\n" + "".join(
        f"""  - id: r{i}
    description: rule {i}
    triggers: [{{kind: state, entity_id: sensor.s{i}, to: "on"}}]
    actions: [{{kind: call, service: switch.turn_on, target: {{entity_id: switch.x{i}}}}}]
"""
        for i in range(300)
    )
    e = engine(rules(many))
    fx = change(e, "sensor.s17", "off", "on", T0)
    assert calls(fx) == ["switch.turn_on ['switch.x17']"]
    assert len(fx.traces) == 1
    assert not change(e, "sensor.unrelated", "off", "on", T0)


def test_an_entity_the_gateway_sees_for_the_first_time_fires_nothing() -> None:
    e = engine(hallway(), sensor__outdoor_illuminance=st("12"))
    first = e.on_state_changed(
        event_id="ha.binary_sensor.hallway_motion.first",
        entity_id="binary_sensor.hallway_motion",
        old=None,
        new=st("off"),
        now=T0,
        reconciled=True,
    )
    assert not first
    assert e.states["binary_sensor.hallway_motion"].state == "off"
    missed = e.on_state_changed(  # a real change the gateway found on reconnecting: it fires
        event_id="ha.binary_sensor.hallway_motion.later",
        entity_id="binary_sensor.hallway_motion",
        old=st("off"),
        new=st("on", T0 + timedelta(seconds=5)),
        now=T0 + timedelta(seconds=5),
        reconciled=True,
    )
    assert calls(missed) == ["light.turn_on ['light.hallway']"]


MIRROR = """
rules:
  - id: mirror_on
    description: c on, d on
    triggers: [{kind: state, entity_id: input_boolean.c, to: "on"}]
    actions: [{kind: call, service: input_boolean.turn_on, target: {entity_id: input_boolean.d}}]
  - id: mirror_off
    description: c off, d off
    triggers: [{kind: state, entity_id: input_boolean.c, to: "off"}]
    actions: [{kind: call, service: input_boolean.turn_off, target: {entity_id: input_boolean.d}}]
"""


def test_a_reconciled_change_is_judged_against_what_the_rules_last_saw() -> None:
    # The gateway published c off -> on and was killed before its projection learnt it; c went
    # back to off while it was away. Its reconciled event says off -> off (its stale guess of
    # the old state): the rules saw c on, so for them c turned off, and the mirror follows.
    e = engine(rules(MIRROR), input_boolean__c=st("off", T0 - timedelta(minutes=5)))
    assert calls(change(e, "input_boolean.c", "off", "on", T0)) == [
        "input_boolean.turn_on ['input_boolean.d']"
    ]
    reconciled = e.on_state_changed(
        event_id="ha.input_boolean.c.later",
        entity_id="input_boolean.c",
        old=st("off", T0 - timedelta(minutes=5)),
        new=st("off", T0 + timedelta(seconds=30)),
        now=T0 + timedelta(seconds=31),
        reconciled=True,
    )
    assert calls(reconciled) == ["input_boolean.turn_off ['input_boolean.d']"]
    # Published again (a second reconnect), it is the same message: the same command id.
    seen = e.on_state_changed(
        event_id="ha.input_boolean.c.later",
        entity_id="input_boolean.c",
        old=st("on", T0),
        new=st("off", T0 + timedelta(seconds=30)),
        now=T0 + timedelta(seconds=32),
        reconciled=True,
    )
    assert [c.command_id for c in seen.commands] == [c.command_id for c in reconciled.commands]


def backlog_of(e: RuleEngine, states: list[str], start: datetime) -> list[Effects]:
    """Replay changes of c as the engine meets them after a restart (its view already holds
    the last one, read from the projection)."""
    out = []
    for i in range(1, len(states)):
        at = start + timedelta(seconds=i)
        out.append(
            e.on_state_changed(
                event_id=f"ha.input_boolean.c.{i}",
                entity_id="input_boolean.c",
                old=st(states[i - 1], at - timedelta(seconds=1)),
                new=st(states[i], at),
                now=start + timedelta(minutes=2),
            )
        )
    return out


def test_a_backlog_fires_only_the_latest_change_per_entity_by_default() -> None:
    toggles = ["off", "on", "off", "on", "off", "on", "off", "on", "off"]  # 8 changes
    last = T0 + timedelta(seconds=len(toggles) - 1)
    e = engine(rules(MIRROR), input_boolean__c=st(toggles[-1], last))
    effects = backlog_of(e, toggles, T0)
    assert [calls(fx) for fx in effects[:-1]] == [[]] * 7
    assert calls(effects[-1]) == ["input_boolean.turn_off ['input_boolean.d']"]
    skipped = [t for fx in effects for t in fx.traces if t.status == "skipped"]
    assert len(skipped) == 7
    assert all("superseded" in t.reason for t in skipped)


def test_a_later_change_of_attributes_only_does_not_supersede_a_state_change() -> None:
    # c turned on, then only an attribute changed, and the engine restarted with the latter in
    # its view: a `to: on` trigger never fires on the attribute change, so the state change
    # must still fire.
    touched = EntityState(
        state="on",
        attributes={"friendly_name": "C"},
        last_changed=T0,
        last_updated=T0 + timedelta(seconds=2),
    )
    e = engine(rules(MIRROR), input_boolean__c=touched)
    fx = e.on_state_changed(
        event_id="ha.input_boolean.c.1",
        entity_id="input_boolean.c",
        old=st("off", T0 - timedelta(minutes=5)),
        new=st("on", T0),
        now=T0 + timedelta(seconds=10),
    )
    assert calls(fx) == ["input_boolean.turn_on ['input_boolean.d']"]


def test_a_rule_with_backlog_all_fires_every_change_of_a_backlog() -> None:
    counting = MIRROR.replace(
        "    actions: [{kind: call, service: input_boolean.turn_on",
        "    backlog: {policy: all}\n    actions: [{kind: call, service: input_boolean.turn_on",
    )
    toggles = ["off", "on", "off", "on", "off"]
    e = engine(rules(counting), input_boolean__c=st("off", T0 + timedelta(seconds=4)))
    effects = backlog_of(e, toggles, T0)
    fired = [c for fx in effects for c in calls(fx)]
    assert fired == ["input_boolean.turn_on ['input_boolean.d']"] * 2 + [
        "input_boolean.turn_off ['input_boolean.d']"
    ]


def test_backlog_max_lateness_skips_a_late_run_and_bounds_its_commands() -> None:
    bounded = MIRROR.replace(
        "    actions: [{kind: call, service: input_boolean.turn_on",
        "    backlog: {max_lateness: 10s}\n"
        "    actions: [{kind: call, service: input_boolean.turn_on",
    )
    e = engine(rules(bounded), input_boolean__c=st("off", T0 - timedelta(minutes=5)))
    on_time = change(e, "input_boolean.c", "off", "on", T0)
    assert [c.not_after for c in on_time.commands] == [T0 + timedelta(seconds=10)]
    late = e.on_state_changed(
        event_id="ha.input_boolean.c.late",
        entity_id="input_boolean.c",
        old=st("on", T0),
        new=st("off", T0 + timedelta(seconds=1)),
        now=T0 + timedelta(seconds=12),
    )
    assert calls(late) == ["input_boolean.turn_off ['input_boolean.d']"]  # mirror_off: no bound
    e2 = engine(rules(bounded), input_boolean__c=st("off", T0 - timedelta(minutes=5)))
    too_late = e2.on_state_changed(
        event_id="ha.input_boolean.c.too_late",
        entity_id="input_boolean.c",
        old=st("off", T0 - timedelta(minutes=5)),
        new=st("on", T0),
        now=T0 + timedelta(seconds=11),
    )
    assert not too_late.commands
    assert "backlog.max_lateness" in too_late.traces[0].reason
