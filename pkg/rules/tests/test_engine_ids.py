"""Command and run ids are hashes that must never change across an upgrade: a changed id would
execute a command twice. These literals were produced by the engine before processors owned
their behaviour (issue 13), through branches, a ``delay``, a ``wait_for``, a ``for`` and a queue,
and pinned again once, before the first release, when versions stopped counting fields left out
(so that adding an optional field to a kind changes no existing rule's ids)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine
from ruby_rules.engine.core import trigger_hash
from ruby_rules.model import RuleConfig, rule_version
from ruby_rules.processors.registry import default_registry
from ruby_rules.processors.triggers.state import StateTriggerConfig
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
        "run.nested.nested-af042055e1185cd9477e",
        "run.nested.nested-aa45d63fbfe643630a1f",
    )
    assert seen == [
        (["cmd-6703c5a3472e4ddb2b3ad9a42bd48d58"], [(first[11:], "waiting")], [first]),
        ([], [("", "armed")], ["for.nested.1.switch.wall"]),
        (["cmd-ef70f8f02a26204ab5cf181e6aaecf12"], [(first[11:], "waiting")], [first]),
        (["cmd-8eba328711e48f16e667345c41c8450f"], [(first[11:], "finished")], [first]),
        (["cmd-5fa9ebb14c6537a6c6d1756c87fd4e93"], [(second[11:], "waiting")],
         ["for.nested.1.switch.wall", second]),
        (["cmd-a7cfb62b0c193061e94ca73f0e0b49c5"], [(second[11:], "waiting")], [second]),
    ]  # fmt: skip


def test_a_field_written_null_counts_as_left_out() -> None:
    [plain] = load_text(RULE, "n.yaml").rules
    [nulled] = load_text(
        RULE.replace('to: "on"\n      - kind', 'to: "on"\n        attribute: ~\n      - kind'),
        "n.yaml",
    ).rules
    assert nulled.config.triggers[0].model_fields_set >= {"attribute"}
    assert nulled.version == plain.version
    assert trigger_hash(nulled.config.triggers[0]) == trigger_hash(plain.config.triggers[0])


class _StateLater(StateTriggerConfig):
    """The state trigger as a later release might have it: one more optional field."""

    not_yet_a_field: str | None = None


class _RuleLater(RuleConfig):
    not_yet_an_option: str | None = None


_RuleLater.model_rebuild(_types_namespace=default_registry().namespace())  # resolve AnyTrigger...


def test_an_optional_field_added_later_changes_no_version_and_no_trigger_hash() -> None:
    [rule] = load_text(RULE, "n.yaml").rules
    trigger = rule.config.triggers[0]
    later = _StateLater.model_validate(trigger.model_dump(by_alias=True))
    assert trigger_hash(later) == trigger_hash(trigger)
    dumped = rule.config.model_dump(by_alias=True)
    assert rule_version(_RuleLater.model_validate(dumped)) == rule.version
