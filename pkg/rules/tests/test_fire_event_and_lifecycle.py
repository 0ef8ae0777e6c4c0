"""The ``fire_event`` action and the ``homeassistant`` trigger, in the pure engine (no server).

The gateway's side (firing once, announcing a start once) is tested in services/gateway and
services/engine against real servers and the simulator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine
from ruby_rules.model import Rule
from ruby_schemas.commands import FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE
from ruby_schemas.ha_events import LIFECYCLE_EVENT_TYPES, EntityState

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

DOORBELL = """\
rules:
  - id: doorbell
    description: the doorbell rings on Home Assistant's bus
    triggers:
      - kind: state
        entity_id: binary_sensor.doorbell
        to: "on"
    actions:
      - kind: fire_event
        event_type: custom.doorbell_rang
        data:
          where: front
          entity: "{{ trigger.entity_id }}"
"""

LIFECYCLE = """\
rules:
  - id: on_start
    description: says so when Home Assistant is up
    triggers:
      - kind: homeassistant
        event: start
    actions:
      - kind: call
        service: notify.notify
        data: {message: up}
  - id: on_shutdown
    description: tells others Home Assistant stops
    triggers:
      - kind: homeassistant
        event: shutdown
    actions:
      - kind: publish
        event_type: ha_stopping
"""


def rules(text: str, file: str = "t.yaml") -> tuple[Rule, ...]:
    result = load_text(text, file)
    assert result.ok, [str(e) for e in result.errors]
    return result.rules


def engine(loaded: tuple[Rule, ...]) -> RuleEngine:
    e = RuleEngine(tz=UTC)
    e.set_states({})
    e.set_rules(loaded, T0)
    return e


def ring(e: RuleEngine, at: datetime = T0) -> Effects:
    def st(state: str, when: datetime) -> EntityState:
        return EntityState(state=state, last_changed=when, last_updated=when)

    return e.on_state_changed(
        event_id=f"ha.binary_sensor.doorbell.{at.isoformat()}",
        entity_id="binary_sensor.doorbell",
        old=st("off", at - timedelta(minutes=1)),
        new=st("on", at),
        now=at,
    )


def lifecycle(e: RuleEngine, event: str, boot: datetime = T0) -> Effects:
    return e.on_event(
        event_id=f"ha.lifecycle.{event}.{boot.isoformat()}",
        event_type=LIFECYCLE_EVENT_TYPES[event],
        data={"event": event},
        fired_at=boot,
        now=boot,
    )


def test_fire_event_sends_one_command_with_rendered_data_and_a_stable_id() -> None:
    e = engine(rules(DOORBELL))
    fx = ring(e)
    [command] = fx.commands
    assert command.event_type == "custom.doorbell_rang"
    assert (command.domain, command.service) == (FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE)
    assert command.data == {"where": "front", "entity": "binary_sensor.doorbell"}
    assert command.target == {}
    [trace] = fx.traces
    [step] = [s for s in trace.steps if s.kind == "fire_event"]
    assert step.command_id == command.command_id
    assert step.result == "sent custom.doorbell_rang"
    # The same triggering message again (a redelivery): the same command id, fired once.
    again = ring(e)
    assert [c.command_id for c in again.commands] == [command.command_id]


@pytest.mark.parametrize(
    ("event_type", "error"),
    [
        ("x" * 65, "1 to 64 characters"),
        ("a\tb", "no control characters"),
        ("{{ 'x' }}", "an event type is not a template"),
        ("", "1 to 64 characters"),
    ],
)
def test_an_event_type_home_assistant_would_refuse_is_refused_at_load(
    event_type: str, error: str
) -> None:
    text = DOORBELL.replace("custom.doorbell_rang", json.dumps(event_type))
    result = load_text(text, "t.yaml")
    assert result.rules == ()
    message = str(result.errors[0])
    assert message.startswith("t.yaml:10:21: rule 'doorbell': actions[0].event_type:"), message
    assert error in message


def test_any_event_type_home_assistant_accepts_loads_dots_and_spaces_included() -> None:
    for event_type in ("a.b.c", "my event", "x" * 64):
        [rule] = rules(DOORBELL.replace("custom.doorbell_rang", json.dumps(event_type)))
        assert rule.config.actions[0].event_type == event_type  # type: ignore[attr-defined]  # a FireEventActionConfig


def test_home_assistant_event_action_loads_with_its_data_merged() -> None:
    text = """\
- id: relay
  trigger:
    - platform: state
      entity_id: binary_sensor.doorbell
      to: "on"
  action:
    - event: doorbell_rang
      event_data:
        where: front
        who: nobody
      event_data_template:
        who: "{{ trigger.to_state.state }}"
"""
    [rule] = rules(text, "automations.yaml")
    [command] = ring(engine((rule,))).commands
    assert command.event_type == "doorbell_rang"
    assert command.data == {"where": "front", "who": "on"}  # the template, later, wins


def test_the_start_trigger_fires_on_a_start_and_the_shutdown_trigger_on_a_shutdown() -> None:
    e = engine(rules(LIFECYCLE))
    started = lifecycle(e, "start")
    assert [(c.domain, c.service) for c in started.commands] == [("notify", "notify")]
    assert [t.rule_id for t in started.traces] == ["on_start"]
    stopping = lifecycle(e, "shutdown")
    assert stopping.commands == []
    assert [(t.rule_id, t.status) for t in stopping.traces] == [("on_shutdown", "finished")]
    assert [ev.event_type for ev in stopping.events] == ["ha_stopping"]


def test_a_bus_event_of_any_type_never_fires_a_homeassistant_trigger() -> None:
    e = engine(rules(LIFECYCLE))
    for event_type in ("homeassistant_start", "homeassistant_started", "homeassistant_stop"):
        fx = e.on_event(
            event_id=f"ha.event.{event_type}", event_type=event_type, data={}, fired_at=T0, now=T0
        )
        assert not fx.commands
        assert not fx.traces


def test_an_event_trigger_cannot_name_a_lifecycle_event_type() -> None:
    text = "rules:\n  - id: x\n    description: d\n    triggers:\n"
    text += "      - {kind: event, event_type: homeassistant.start}\n"
    text += "    actions:\n      - {kind: stop}\n"
    result = load_text(text, "t.yaml")
    assert result.rules == ()
    assert "expected letters, digits, '_' or '-' only" in str(result.errors[0])


def test_home_assistant_trigger_in_both_spellings_loads_and_a_wrong_event_is_refused() -> None:
    text = """\
- id: on_start
  triggers:
    - trigger: homeassistant
      event: start
  actions:
    - action: notify.notify
- id: on_shutdown
  trigger:
    platform: homeassistant
    event: shutdown
  action:
    service: notify.notify
"""
    loaded = rules(text, "automations.yaml")
    assert [r.config.triggers[0].event for r in loaded] == ["start", "shutdown"]  # type: ignore[attr-defined]  # HomeAssistantTriggerConfig
    wrong = load_text(text.replace("event: start", "event: restart"), "automations.yaml")
    assert [r.id for r in wrong.rules] == ["on_shutdown"]
    [message] = [str(e) for e in wrong.errors]
    assert message.startswith("automations.yaml:4:14: rule 'on_start': triggers[0].event:"), message
    assert "'start'" in message
    assert "'shutdown'" in message
