"""The ``time`` trigger at an entity: ``input_datetime`` (time only: daily; date and time: once;
date only: midnight once), a timestamp sensor, offsets, lists mixing times and entities, and
the engine re-arming it when the entity changes, durably."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine, read_record
from ruby_rules.model import Rule
from ruby_rules.processors.triggers.time import EntityTime, TimeTrigger, TimeTriggerConfig
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def st(state: str, **attributes: Any) -> EntityState:
    return EntityState(state=state, attributes=attributes, last_changed=T0, last_updated=T0)


def trigger(at: object) -> TimeTrigger:
    return TimeTrigger(TimeTriggerConfig.model_validate({"kind": "time", "at": at}))


def wake(value: str, **attributes: Any) -> dict[str, EntityState]:
    return {"input_datetime.wake": st(value, **attributes)}


ALARM = "sensor.phone_next_alarm"


def alarm(value: str, device_class: str | None = "timestamp") -> dict[str, EntityState]:
    return {ALARM: st(value, device_class=device_class)}


def test_an_input_datetime_with_a_time_only_fires_every_day() -> None:
    t = trigger("input_datetime.wake")
    states = wake("07:15:00", has_date=False, has_time=True)
    assert t.next_fire(T0, states) == datetime(2026, 12, 5, 7, 15, tzinfo=UTC)
    early = T0.replace(hour=6)
    assert t.next_fire(early, states) == datetime(2026, 12, 4, 7, 15, tzinfo=UTC)
    paris = early.astimezone(PARIS)  # its clock is local time, in the engine's timezone
    assert t.next_fire(paris, states) == datetime(2026, 12, 4, 7, 15, tzinfo=PARIS)


def test_a_date_and_time_fires_once_and_a_date_only_at_its_midnight() -> None:
    t = trigger("input_datetime.wake")
    once = wake("2026-12-06 07:15:00", has_date=True, has_time=True)
    assert t.next_fire(T0, once) == datetime(2026, 12, 6, 7, 15, tzinfo=UTC)
    assert t.next_fire(datetime(2026, 12, 6, 7, 15, tzinfo=UTC), once) is None  # then never
    midnight = wake("2026-12-06", has_date=True, has_time=False)
    assert t.next_fire(T0, midnight) == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert t.next_fire(T0, wake("2026-12-01 07:15:00")) is None  # past
    assert t.next_fire(T0, wake("unknown")) is None
    assert t.next_fire(T0, {}) is None


def test_a_timestamp_sensor_fires_once_at_its_instant() -> None:
    t = trigger(ALARM)
    assert t.next_fire(T0, alarm("2026-12-05T06:30:00+00:00")) == datetime(
        2026, 12, 5, 6, 30, tzinfo=UTC
    )
    assert t.next_fire(T0, alarm("2026-12-04T11:00:00+00:00")) is None  # past
    assert t.next_fire(T0, alarm("unavailable")) is None
    assert t.next_fire(T0, alarm("2026-12-05T06:30:00+00:00", device_class=None)) is None
    assert t.next_fire(T0, alarm("2026-12-05T06:30:00")) is None  # no timezone: not a timestamp


@pytest.mark.parametrize(
    ("entity", "states", "offset", "expected"),
    [
        (ALARM, alarm("2026-12-05T06:30:00+00:00"), "-00:05:00", datetime(2026, 12, 5, 6, 25)),
        (ALARM, alarm("2026-12-04T12:03:00+00:00"), "-00:05:00", None),  # already past
        ("input_datetime.wake", wake("2026-12-06 07:15:00"), "+01:00:00",
         datetime(2026, 12, 6, 8, 15)),
        # a time only: the offset wraps around midnight, as HA applies it
        ("input_datetime.wake", wake("23:30:00"), "+01:00:00", datetime(2026, 12, 5, 0, 30)),
        ("input_datetime.wake", wake("00:10:00"), "-00:20:00", datetime(2026, 12, 4, 23, 50)),
    ],
)  # fmt: skip
def test_offsets(entity: str, states: dict[str, EntityState], offset: str,
                 expected: datetime | None) -> None:  # fmt: skip
    t = trigger({"entity_id": entity, "offset": offset})
    assert t.next_fire(T0, states) == (None if expected is None else expected.replace(tzinfo=UTC))


def test_a_list_mixes_times_and_entities_and_fires_at_the_first() -> None:
    t = trigger(["13:00", "input_datetime.wake", {"entity_id": ALARM, "offset": "-10m"}])
    states = {**wake("12:30:00"), **alarm("2026-12-04T12:20:00+00:00")}
    assert t.next_fire(T0, states) == T0 + timedelta(minutes=10)  # the alarm, less 10 min
    assert t.next_fire(T0 + timedelta(minutes=10), states) == T0 + timedelta(minutes=30)
    assert t.next_fire(T0 + timedelta(minutes=30), {}) == T0 + timedelta(minutes=60)
    assert t.watch().entities == ("input_datetime.wake", ALARM)
    assert t.watch().timed


def test_the_config_refuses_other_entities_and_keeps_plain_times_as_they_were() -> None:
    with pytest.raises(ValueError, match="expected an input_datetime or a sensor entity"):
        TimeTriggerConfig.model_validate({"kind": "time", "at": "light.kitchen"})
    config = TimeTriggerConfig.model_validate({"kind": "time", "at": ["07:00", "input_datetime.x"]})
    assert config.at == (time(7, 0), EntityTime(entity_id="input_datetime.x"))
    assert TimeTriggerConfig.model_validate(config.model_dump(mode="json")) == config
    assert trigger("07:00").watch().entities == ()


RULES = """
rules:
  - id: wake
    description: the bedroom light at the wake-up time the helper holds
    triggers:
      - {kind: time, at: input_datetime.wake}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.bedroom}}
"""
KEY = "at.wake.0"


def rules() -> tuple[Rule, ...]:
    loaded = load_text(RULES, "wake.yaml")
    assert loaded.ok, loaded.errors
    return loaded.rules


def fire_due(e: RuleEngine, now: datetime) -> Effects:
    total = Effects()
    for key in e.due(now):
        total.extend(e.fire(key, now))
    return total


def test_the_engine_rearms_it_when_the_helper_changes_and_fires_once_after_a_restart() -> None:
    e = RuleEngine(tz=UTC)
    e.set_states(wake("2026-12-04 18:00:00", has_date=True, has_time=True))
    e.set_rules(rules(), T0)
    assert e.timers[KEY].deadline == T0.replace(hour=18)
    later = T0 + timedelta(minutes=1)
    moved = e.on_state_changed(
        event_id="w1", entity_id="input_datetime.wake", old=e.states["input_datetime.wake"],
        new=st("2026-12-04 12:30:00", has_date=True, has_time=True), now=later,
    )  # fmt: skip
    assert moved.commands == []
    due = T0.replace(minute=30)
    assert e.timers[KEY].deadline == due
    stored = [read_record(record.to_json()) for record in e.timers.values()]
    uninterrupted = fire_due(e, due)
    assert [f"{c.domain}.{c.service}" for c in uninterrupted.commands] == ["light.turn_on"]
    assert KEY not in e.timers  # a date and a time: once

    restarted = RuleEngine(tz=UTC)
    restarted.set_states(wake("2026-12-04 12:30:00", has_date=True, has_time=True))
    restarted.restore(stored)
    restarted.set_rules(rules(), later)
    resumed = fire_due(restarted, due + timedelta(seconds=2))
    assert [c.command_id for c in resumed.commands] == [
        c.command_id for c in uninterrupted.commands
    ]
    assert fire_due(restarted, due + timedelta(hours=1)).commands == []
    assert KEY not in restarted.timers
