"""The ``wait_template`` action: goes on at once when its template is true, else waits (a
durable record) until a change makes it true or the timeout passes; resumes once, also in
another engine after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine, read_record
from ruby_rules.model import Rule
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
RULE = """
rules:
  - id: tv_off_then_lights
    description: at 23:30, once the TV is off (at most an hour), the living room light off
    triggers:
      - {kind: state, entity_id: input_button.bedtime, to: ~}
    actions:
      - {kind: call, service: script.turn_on, target: {entity_id: script.remind}}
      - kind: wait_template
        value_template: "{{ is_state('media_player.tv', 'off') }}"
        timeout: 1h
        continue_on_timeout: CONTINUE
      - {kind: call, service: light.turn_off, target: {entity_id: light.living_room}}
"""


def st(state: str, at: datetime = T0) -> EntityState:
    return EntityState(state=state, last_changed=at, last_updated=at)


def load(continue_on_timeout: bool = True) -> tuple[Rule, ...]:
    result = load_text(RULE.replace("CONTINUE", str(continue_on_timeout).lower()), "w.yaml")
    assert result.ok, result.errors
    return result.rules


def engine(tv: str, continue_on_timeout: bool = True) -> RuleEngine:
    e = RuleEngine(tz=UTC)
    e.set_states({"media_player.tv": st(tv, T0 - timedelta(hours=1))})
    e.set_rules(load(continue_on_timeout), T0)
    return e


def change(e: RuleEngine, entity: str, new: str, minutes: float) -> Effects:
    at = T0 + timedelta(minutes=minutes)
    return e.on_state_changed(
        event_id=f"{entity}@{minutes}", entity_id=entity, old=e.states.get(entity),
        new=st(new, at), now=at,
    )  # fmt: skip


def press(e: RuleEngine) -> Effects:
    return change(e, "input_button.bedtime", "2026-11-20T23:30:00+00:00", 0)


def services(fx: Effects) -> list[str]:
    return [f"{c.domain}.{c.service}" for c in fx.commands]


def fire_due(e: RuleEngine, now: datetime) -> Effects:
    total = Effects()
    for key in e.due(now):
        total.extend(e.fire(key, now))
    return total


def test_a_template_already_true_goes_on_at_once() -> None:
    e = engine("off")
    fx = press(e)
    assert services(fx) == ["script.turn_on", "light.turn_off"]
    assert e.timers == {}
    assert [s.result for s in fx.traces[-1].steps if s.kind == "wait_template"] == [
        "true already: going on"
    ]


def test_it_waits_until_a_change_makes_it_true() -> None:
    e = engine("playing")
    fx = press(e)
    assert services(fx) == ["script.turn_on"]
    assert fx.traces[-1].status == "waiting"
    assert change(e, "media_player.tv", "paused", 10).commands == []  # still false
    assert services(change(e, "media_player.tv", "off", 20)) == ["light.turn_off"]
    assert e.timers == {}
    assert change(e, "media_player.tv", "on", 21).commands == []
    assert change(e, "media_player.tv", "off", 22).commands == []  # resumed once only


def test_the_timeout_goes_on_or_stops_the_run() -> None:
    goes_on = engine("playing")
    press(goes_on)
    assert services(fire_due(goes_on, T0 + timedelta(hours=1))) == ["light.turn_off"]
    stops = engine("playing", continue_on_timeout=False)
    press(stops)
    fx = fire_due(stops, T0 + timedelta(hours=1))
    assert fx.commands == []
    assert fx.traces[-1].status == "stopped"


def test_a_paused_wait_resumes_once_in_a_restarted_engine() -> None:
    first = engine("playing")
    press(first)
    [record] = first.timers.values()
    assert record.kind == "run"
    stored = read_record(record.to_json())

    second = engine("playing")
    second.restore([stored])
    resumed = change(second, "media_player.tv", "off", 20)
    assert services(resumed) == ["light.turn_off"]
    assert resumed.timers == {record.key: None}
    assert change(second, "media_player.tv", "off", 25).commands == []
    assert fire_due(second, T0 + timedelta(hours=2)).commands == []

    same = change(first, "media_player.tv", "off", 20)  # the first engine, had it lived
    assert [c.command_id for c in same.commands] == [c.command_id for c in resumed.commands]


def test_trigger_clock_and_a_missing_timeout_are_refused_when_the_file_loads() -> None:
    for bad, error in (
        ("\"{{ is_state(trigger.entity_id, 'off') }}\"", "'trigger' in wait_template"),
        ("\"{{ now().hour > 1 and is_state('a.b', 'off') }}\"", "now() in wait_template"),
    ):
        text = RULE.replace("\"{{ is_state('media_player.tv', 'off') }}\"", bad)
        result = load_text(text.replace("CONTINUE", "true"), "w.yaml")
        assert any(error in str(e) for e in result.errors), result.errors
    untimed = load_text(RULE.replace("        timeout: 1h\n", "").replace("CONTINUE", "true"), "w")
    assert any("timeout" in str(e) and "missing" in str(e) for e in untimed.errors)


def test_the_wait_variable_says_whether_the_template_came_true_and_what_was_left() -> None:
    rule = RULE.replace(
        "{kind: call, service: light.turn_off, target: {entity_id: light.living_room}}",
        "{kind: call, service: notify.notify, data: {message: "
        "'{{ wait.completed }} {{ wait.remaining | int }}'}}",
    )

    def message(tv: str, then: str | None) -> str:
        result = load_text(rule.replace("CONTINUE", "true"), "w.yaml")
        assert result.ok, result.errors
        e = RuleEngine(tz=UTC)
        e.set_states({"media_player.tv": st(tv, T0 - timedelta(hours=1))})
        e.set_rules(result.rules, T0)
        fx = press(e)
        if then == "off":
            fx = change(e, "media_player.tv", "off", 15)
        elif then == "timeout":
            fx = fire_due(e, T0 + timedelta(hours=1))
        [call] = [c for c in fx.commands if c.service == "notify"]
        return str(call.data["message"])

    assert message("off", None) == "True 3600"  # true at once: the whole timeout left
    assert message("on", "off") == "True 2700"  # came true after 15 minutes
    assert message("on", "timeout") == "False 0"
