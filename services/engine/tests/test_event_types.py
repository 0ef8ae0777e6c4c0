"""The engine publishes the Home Assistant event types its rules listen to, for the gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from ruby_engine.event_types import EventTypesRecord, event_types_of, wanted_event_types
from ruby_engine.testing import running_engine
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import eventually
from ruby_natsx.topology import EVENT_TYPES_KEY, STATUS, Topology
from ruby_rules import load_text
from ruby_rules.engine import RuleEngine
from ruby_rules.model import Rule
from ruby_schemas.envelope import make_envelope
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha_events import EntityState
from ruby_schemas.registry import decode, encode

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

BUTTONS = """
rules:
  - id: button_toggles_lamp
    description: a ZHA button toggles the lamp
    triggers:
      - {kind: event, event_type: zha_event, event_data: {command: toggle}}
      - {kind: state, entity_id: input_boolean.guest_mode, to: "on"}
    actions:
      - {kind: call, service: light.toggle, target: {entity_id: light.hallway}}
      - {kind: publish, event_type: lamp_toggled}
  - id: doorbell_then_remote
    description: waits, deep inside its actions, for other events
    triggers:
      - {kind: state, entity_id: binary_sensor.hallway_motion, to: "on"}
    actions:
      - kind: choose
        options:
          - conditions: [{kind: state, entity_id: light.hallway, state: "off"}]
            actions:
              - {kind: wait_for, trigger: {kind: event, event_type: doorbell}, timeout: 1m}
        default:
          - kind: if
            conditions: [{kind: state, entity_id: switch.fan, state: "on"}]
            then:
              - kind: wait_for
                trigger: {kind: event, event_type: remote_pressed, event_data: {button: 1}}
                timeout: 1m
              - kind: wait_for
                trigger: {kind: state, entity_id: switch.fan, to: "off"}
                timeout: 1m
      - {kind: call, service: light.turn_on, target: {entity_id: light.hallway}}
"""

WAITS = """
rules:
  - id: wait_for_the_doorbell
    description: pauses until the doorbell rings
    triggers:
      - {kind: state, entity_id: binary_sensor.hallway_motion, to: "on"}
    actions:
      - {kind: wait_for, trigger: {kind: event, event_type: doorbell}, timeout: 1h}
      - {kind: call, service: light.turn_on, target: {entity_id: light.hallway}}
"""


def rules(text: str) -> tuple[Rule, ...]:
    result = load_text(text, "t.yaml")
    assert result.ok, result.errors
    return result.rules


def test_every_event_trigger_is_found_at_any_depth_and_nothing_else() -> None:
    found = event_types_of(rule.program for rule in rules(BUTTONS))
    # not lamp_toggled: that is an event the rule publishes, not one it listens to
    assert found == {"zha_event", "doorbell", "remote_pressed"}
    assert event_types_of([]) == frozenset()


def test_home_assistants_start_and_shutdown_are_not_asked_of_the_gateway() -> None:
    text = """
rules:
  - id: on_start_or_stop_or_button
    description: the gateway announces start and shutdown unasked; the button it must forward
    triggers:
      - {kind: homeassistant, event: start}
      - {kind: homeassistant, event: shutdown}
      - {kind: event, event_type: zha_event}
    actions:
      - {kind: wait_for, trigger: {kind: homeassistant, event: start}, timeout: 1h}
"""
    [rule] = rules(text)
    assert "homeassistant.start" in rule.program.event_types()  # how the core indexes them
    assert event_types_of([rule.program]) == {"zha_event"}


def test_webhooks_are_not_asked_of_the_gateway_they_come_from_the_api() -> None:
    text = """
rules:
  - id: webhook_or_button
    description: a webhook comes from the API, not from Home Assistant's bus
    triggers:
      - {kind: webhook, webhook_id: garage-door}
      - {kind: event, event_type: zha_event}
    actions:
      - {kind: wait_for, trigger: {kind: webhook, webhook_id: garage-closed}, timeout: 1h}
"""
    [rule] = rules(text)
    assert "webhook.garage-door" in rule.program.event_types()  # how the core indexes them
    assert "webhook.garage-closed" in rule.program.event_types()
    assert event_types_of([rule.program]) == {"zha_event"}


def test_a_paused_run_keeps_its_event_type_wanted_until_it_ends() -> None:
    core = RuleEngine(tz=UTC)
    core.set_rules(rules(WAITS), T0)
    assert wanted_event_types(core) == {"doorbell"}
    off, on = (
        EntityState(state=s, last_changed=T0, last_updated=T0 + timedelta(seconds=n))
        for n, s in enumerate(("off", "on"))
    )
    core.on_state_changed(
        event_id="motion", entity_id="binary_sensor.hallway_motion", old=off, new=on, now=T0
    )
    core.set_rules((), T0)  # the rule is removed; its run still waits for the doorbell
    assert [record.kind for record in core.timers.values()] == ["run"]
    assert wanted_event_types(core) == {"doorbell"}
    effects = core.on_event(event_id="ring", event_type="doorbell", data={}, fired_at=T0, now=T0)
    assert [command.service for command in effects.commands] == ["turn_on"]
    assert not core.timers
    assert wanted_event_types(core) == frozenset()


async def _record(js: JetStreamContext, topo: Topology) -> tuple[int, HaEventTypesV1] | None:
    kv = await js.key_value(topo.bucket(STATUS).bucket)
    try:
        entry = await kv.get(EVENT_TYPES_KEY)
    except KeyNotFoundError:
        return None
    payload = decode(entry.value or b"").data
    assert isinstance(payload, HaEventTypesV1)
    return entry.revision or 0, payload


async def test_the_set_is_stored_at_start_and_again_only_when_it_changes(
    nc: Client, js: JetStreamContext, topology_applied: Topology, tmp_path: Path
) -> None:
    status = await js.key_value(topology_applied.bucket(STATUS).bucket)
    stale = HaEventTypesV1(event_types=("left_by_an_old_engine",))
    await status.put(EVENT_TYPES_KEY, encode(make_envelope(stale, source="ruby/engine")))
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "buttons.yaml").write_text(BUTTONS)
    async with running_engine(nc, topology_applied.subjects, directory) as engine:
        stored = await _record(js, topology_applied)
        assert stored is not None
        first, payload = stored
        assert payload.event_types == ("doorbell", "remote_pressed", "zha_event")

        # A change that does not touch the event types writes nothing.
        (directory / "buttons.yaml").write_text(BUTTONS.replace("the lamp", "the hall lamp"))
        await engine.reload(["buttons.yaml"])
        assert engine.core.rules["button_toggles_lamp"].config.description.endswith("hall lamp")
        assert await _record(js, topology_applied) == (first, payload)

        # Removing the rule with the waits drops its two types.
        (directory / "buttons.yaml").write_text(BUTTONS.split("  - id: doorbell_then_remote")[0])
        await engine.reload(["buttons.yaml"])
        stored = await _record(js, topology_applied)
        assert stored is not None
        assert stored[0] > first
        assert stored[1].event_types == ("zha_event",)

        # A new file adds its types.
        (directory / "waits.yaml").write_text(WAITS)
        await engine.reload(["waits.yaml"])
        stored = await _record(js, topology_applied)
        assert stored is not None
        assert stored[1].event_types == ("doorbell", "zha_event")


async def test_a_set_that_cannot_be_stored_is_retried_until_it_is(
    nc: Client, js: JetStreamContext, prefix: str
) -> None:
    bucket = f"{prefix}_late_status"  # no such bucket yet: JetStream refuses the write
    publisher = Publisher(nc)
    record = EventTypesRecord(publisher, bucket, retry=0.05)
    core = RuleEngine(tz=UTC)
    core.set_rules(rules(WAITS), T0)
    try:
        await record.update(core)
        assert record.stored is None
        kv = await js.create_key_value(bucket=bucket)

        async def stored() -> bool:
            try:
                entry = await kv.get(EVENT_TYPES_KEY)
            except KeyNotFoundError:
                return False
            payload = decode(entry.value or b"").data
            return isinstance(payload, HaEventTypesV1) and payload.event_types == ("doorbell",)

        await eventually(stored, message="the retried write stored")
        assert record.stored == {"doorbell"}
    finally:
        await record.close()
        await publisher.close()
        await js.delete_key_value(bucket)
