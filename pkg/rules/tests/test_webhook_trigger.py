"""The ``webhook`` trigger in the pure engine (no server): in both syntaxes, refused with its
place when its webhook id could not be a URL path segment, and fired by a call with its body
and query readable as ``trigger.json`` and ``trigger.query``.

The gateway's side (``POST /api/v1/webhooks/<id>`` through Traefik, once per
Idempotency-Key) is tested in services/gateway/tests/test_api_edge.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine
from ruby_rules.model import Rule
from ruby_schemas.ha_events import EntityState
from ruby_schemas.webhooks import WebhookCalledV1, WebhookMethod

T0 = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)

GARAGE = """\
rules:
  - id: garage
    description: a phone says the garage door opened
    triggers:
      - kind: webhook
        id: phone
        webhook_id: garage-door
        allowed_methods: [POST]
    conditions:
      - kind: expression
        value: "{{ trigger.json.open and trigger.query.source == 'tasker' }}"
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: light.garage}
        data:
          brightness: "{{ trigger.json.level }}"
          why: >-
            {{ trigger.platform }} {{ trigger.webhook_id }} {{ trigger.id }}
            by {{ trigger.caller }}
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


def call(
    e: RuleEngine,
    webhook_id: str = "garage-door",
    body: JsonValue = None,
    query: dict[str, str] | None = None,
    *,
    method: WebhookMethod = "POST",
    event_id: str = "api.webhook.1",
) -> Effects:
    """A call as the engine service offers it (`ruby_engine.engine.Engine.handle`)."""
    called = WebhookCalledV1(
        webhook_id=webhook_id,
        method=method,
        body=body,
        query=query or {},
        received=T0,
        caller="phone",
    )
    return e.on_event(
        event_id=event_id,
        event_type=called.event_type,
        data=called.trigger_data(),
        fired_at=called.received,
        now=T0,
    )


def test_a_call_fires_the_rule_with_its_body_and_query_in_conditions_and_templates() -> None:
    e = engine(rules(GARAGE))
    fx = call(e, body={"open": True, "level": 80}, query={"source": "tasker"})
    [command] = fx.commands
    assert (command.domain, command.service) == ("light", "turn_on")
    assert command.data == {"brightness": 80, "why": "webhook garage-door phone by phone"}
    [trace] = fx.traces
    assert (trace.status, trace.trigger.kind, trace.trigger.id) == ("finished", "webhook", "phone")
    # The same message again (a redelivery): the same command id.
    again = call(e, body={"open": True, "level": 80}, query={"source": "tasker"})
    assert [c.command_id for c in again.commands] == [command.command_id]
    # Another call (another message id): another command.
    other = call(e, body={"open": True, "level": 80}, query={"source": "tasker"}, event_id="2")
    assert [c.command_id for c in other.commands] != [command.command_id]


def test_the_condition_reads_the_body_a_call_that_fails_it_runs_nothing() -> None:
    e = engine(rules(GARAGE))
    fx = call(e, body={"open": False, "level": 80}, query={"source": "tasker"})
    assert fx.commands == []
    assert [t.status for t in fx.traces] == ["not_run"]


def test_only_calls_of_its_webhook_with_an_allowed_method_fire_it() -> None:
    e = engine(rules(GARAGE))
    body: JsonValue = {"open": True, "level": 1}
    assert not call(e, "garage-door-2", body, {"source": "tasker"})  # another webhook
    assert not call(e, body=body, query={"source": "tasker"}, method="PUT")  # only POST allowed
    bus = e.on_event(event_id="x", event_type="garage-door", data={}, fired_at=T0, now=T0)
    assert not bus  # a bus event of the same name is no webhook call


def test_an_empty_body_is_none_and_the_query_is_empty() -> None:
    text = GARAGE.replace(
        "{{ trigger.json.open and trigger.query.source == 'tasker' }}",
        "{{ trigger.json is none and trigger.query == {} and trigger.method == 'POST' }}",
    ).replace("{{ trigger.json.level }}", "{{ 10 }}")
    [command] = call(engine(rules(text))).commands
    assert command.data["brightness"] == 10


def test_a_webhook_is_not_a_home_assistant_event_type_to_forward() -> None:
    [rule] = rules(GARAGE)
    assert rule.program.event_types() == {"webhook.garage-door"}  # the engine's own index


def test_a_wait_for_a_webhook_resumes_the_run_with_the_call_in_wait_trigger() -> None:
    text = """\
rules:
  - id: confirm
    description: asks a phone, waits for its answer
    triggers:
      - {kind: state, entity_id: binary_sensor.door, to: "on"}
    actions:
      - kind: wait_for
        trigger: {kind: webhook, webhook_id: door-answer}
        timeout: 5m
      - kind: call
        service: lock.lock
        target: {entity_id: lock.front}
        data: {by: "{{ wait.trigger.json.who }} {{ wait.trigger.webhook_id }}"}
"""
    e = engine(rules(text))
    opened = EntityState(state="on", last_changed=T0, last_updated=T0)
    paused = e.on_state_changed(
        event_id="door-1", entity_id="binary_sensor.door", old=None, new=opened, now=T0
    )
    assert [t.status for t in paused.traces] == ["waiting"]
    assert not call(e, "another-webhook", {"who": "nobody"})
    [command] = call(e, "door-answer", {"who": "Anne"}).commands
    assert command.data == {"by": "Anne door-answer"}


BAD_IDS = [
    ("garage door", "invalid webhook id 'garage door'"),
    ("garage.door", "invalid webhook id 'garage.door'"),
    ("garage/door", "invalid webhook id 'garage/door'"),
    ("x" * 65, "invalid webhook id 'xxxxxxxx"),
    ("", "invalid webhook id ''"),
]


@pytest.mark.parametrize(("webhook_id", "error"), BAD_IDS)
def test_a_webhook_id_that_is_no_path_segment_is_refused_at_its_place(
    webhook_id: str, error: str
) -> None:
    result = load_text(GARAGE.replace("garage-door", json.dumps(webhook_id)), "t.yaml")
    assert result.rules == ()
    [message] = [str(e) for e in result.errors]
    assert message.startswith("t.yaml:7:21: rule 'garage': triggers[0].webhook_id: "), message
    assert error in message
    assert "1 to 64 letters, digits, '_' or '-'" in message


def test_allowed_methods_without_post_is_refused_at_its_place() -> None:
    result = load_text(GARAGE.replace("[POST]", "[PUT]"), "t.yaml")
    [message] = [str(e) for e in result.errors]
    assert message.startswith("t.yaml:8:26: rule 'garage': triggers[0].allowed_methods: "), message
    assert "must include POST" in message
    # Natively there is no local_only: every call is authenticated (HA's is accepted).
    native = load_text(GARAGE.replace("[POST]", "[POST]\n        local_only: true"), "t.yaml")
    assert "'local_only'" in str(native.errors[0])


HA = """\
- id: garage_ha
  alias: Garage door, from a phone
  triggers:
    - trigger: webhook
      webhook_id: garage-door
      allowed_methods: [post, put]
      local_only: false
  conditions: "{{ trigger.json.open }}"
  actions:
    - action: light.turn_on
      target:
        entity_id: light.garage
      data:
        brightness: "{{ trigger.json.level | int }}"
        flash: "{{ trigger.query.flash }}"
- id: old_spelling
  trigger:
    platform: webhook
    webhook_id: 12345
  action:
    service: notify.notify
    data:
      message: "{{ trigger.platform }} {{ trigger.webhook_id }}"
"""


def test_home_assistant_webhook_triggers_load_in_both_spellings_and_fire() -> None:
    loaded = rules(HA, "automations.yaml")
    e = engine(loaded)
    [trigger] = loaded[0].config.triggers
    assert trigger.allowed_methods == ("POST", "PUT")  # type: ignore[attr-defined]  # WebhookTriggerConfig
    [put] = call(
        e, body={"open": True, "level": "40"}, query={"flash": "short"}, method="PUT"
    ).commands
    assert put.data == {"brightness": 40, "flash": "short"}
    [notify] = call(e, "12345", event_id="2").commands  # HA reads the id 12345 as text
    assert notify.data == {"message": "webhook 12345"}


@pytest.mark.parametrize(
    ("change", "where", "error"),
    [
        (("webhook_id: garage-door", "webhook_id: garage door"), "5:19", "invalid webhook id"),
        (("[post, put]", "[get]"), "6:24", "must include POST"),
        (("local_only: false", "local_only: sometimes"), "7:19", "expected true or false"),
    ],
)
def test_a_bad_home_assistant_webhook_trigger_is_refused_at_its_place(
    change: tuple[str, str], where: str, error: str
) -> None:
    result = load_text(HA.replace(*change), "automations.yaml")
    assert [r.id for r in result.rules] == ["old_spelling"]
    [message] = [str(e) for e in result.errors]
    assert message.startswith(f"automations.yaml:{where}: rule 'garage_ha': triggers[0]."), message
    assert error in message
