"""Command and run ids are hashes that must never change across an upgrade: a changed id would
execute a command twice. These literals were produced by the engine before processors owned
their behaviour (issue 13), through branches, a ``delay``, a ``wait_for``, a ``for`` and a queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine
from ruby_schemas.ha_events import EntityState

RULE = """
rules:
  - id: nested
    description: ids across branches, pauses and a for
    mode: queued
    triggers:
      - kind: state
        entity_id: binary_sensor.motion
        to: "on"
      - kind: state
        entity_id: switch.wall
        to: "on"
        for: 2m
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: light.a}
      - kind: choose
        options:
          - conditions: [{kind: state, entity_id: input_boolean.guest, state: "on"}]
            actions:
              - kind: publish
                event_type: guests
          - conditions: [{kind: state, entity_id: input_boolean.guest, state: "off"}]
            actions:
              - kind: if
                conditions: [{kind: state, entity_id: light.a, state: "off"}]
                then:
                  - kind: delay
                    duration: 1m
                  - kind: call
                    service: light.turn_off
                    target: {entity_id: light.a}
      - kind: wait_for
        trigger: {kind: event, event_type: zha_event}
        timeout: 5m
      - kind: call
        service: switch.turn_off
        target: {entity_id: switch.wall}
"""
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def st(value: str, at: datetime) -> EntityState:
    return EntityState(state=value, last_changed=at, last_updated=at)


def summary(fx: Effects) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    traces = [(trace.run_id, trace.status) for trace in fx.traces]
    return [c.command_id for c in fx.commands], traces, sorted(fx.timers)


def test_ids_and_records_are_those_of_the_engine_before_compiling() -> None:
    [rule] = load_text(RULE, "n.yaml").rules
    e = RuleEngine(tz=UTC)
    e.set_states({"input_boolean.guest": st("off", T0), "light.a": st("off", T0)})
    e.set_rules([rule], T0)
    seen = [
        summary(e.on_state_changed(event_id="m1", entity_id="binary_sensor.motion",
                                   old=st("off", T0), new=st("on", T0), now=T0)),
        summary(e.on_state_changed(event_id="w1", entity_id="switch.wall",
                                   old=st("off", T0), new=st("on", T0), now=T0)),
    ]  # fmt: skip
    at = T0 + timedelta(minutes=1)
    seen += [summary(e.fire(key, at)) for key in e.due(at)]
    seen.append(summary(e.on_event(event_id="z1", event_type="zha_event", data={},
                                   fired_at=at, now=at)))  # fmt: skip
    for at in (T0 + timedelta(minutes=3), T0 + timedelta(minutes=10)):
        seen += [summary(e.fire(key, at)) for key in e.due(at)]
    first, second = (
        "run.nested.nested-0de948bcfd5beffaae2a",
        "run.nested.nested-23613b73a87bbbabf3d6",
    )
    assert seen == [
        (["cmd-176cc6ae572f46c416f870e5e8ac7ada"], [(first[11:], "waiting")], [first]),
        ([], [("", "armed")], ["for.nested.1.switch.wall"]),
        (["cmd-f983800fdbdf5d6c54a1b0ba2c13edfa"], [(first[11:], "waiting")], [first]),
        (["cmd-56d313b2e2bb24e63903cb0d6fcdef40"], [(first[11:], "finished")], [first]),
        (["cmd-a80bc260eaf2cf17506c735f584c0d23"], [(second[11:], "waiting")],
         ["for.nested.1.switch.wall", second]),
        (["cmd-1a907be896d136079a77fd7bafac64e1"], [(second[11:], "waiting")], [second]),
    ]  # fmt: skip
