"""A run paused inside a repeat (or with variables) survives a restart: its record, dumped to
JSON and read by a NEW engine, says which iteration it is in; the new engine finishes that
iteration and the next ones, each command exactly once, with the ids an uninterrupted engine
gives (DESIGN promises 2 and 5)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from ruby_rules.testing import Bench, rules_of

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

BLINK = """
- id: blink
  triggers: {trigger: event, event_type: find_keys}
  variables: {lamp: light.hall}
  actions:
    - variables: {started: "{{ trigger.event.data.who }}"}
    - repeat:
        count: 3
        sequence:
          - action: light.toggle
            target: {entity_id: "{{ lamp }}"}
            data: {index: "{{ repeat.index }}", who: "{{ started }}"}
          - delay: {minutes: 1}
    - action: light.turn_off
      target: {entity_id: "{{ lamp }}"}
      data: {who: "{{ started }}"}
"""


def started(text: str) -> Bench:
    b = Bench(rules_of(text, "automations.yaml"), T0)
    b.event("find_keys", T0, who="anne")
    return b


def test_a_run_paused_in_iteration_two_finishes_in_a_new_engine_exactly_once() -> None:
    uninterrupted = started(BLINK)
    uninterrupted.advance(T0 + timedelta(minutes=5))
    assert uninterrupted.data("index") == [1, 2, 3, None]

    first = started(BLINK)
    first.advance(T0 + timedelta(minutes=1, seconds=30))  # iteration 2 sent, now in its delay
    assert first.data("index") == [1, 2]
    [raw] = first.stored.values()
    record = json.loads(raw)
    assert record["resume_after"] == [1, 1, 1]  # action 1 (repeat), iteration 1 (the 2nd), delay
    assert record["loops"] == {"1": 3}
    assert record["variables"] == [
        {"lamp": "light.hall", "started": "anne"},
        {"repeat": {"first": False, "index": 2, "last": False}},
    ]

    second = first.restart()  # only the stored JSON goes across
    second.advance(T0 + timedelta(minutes=5))
    assert second.data("index") == [1, 2, 3, None]
    assert second.data("who") == ["anne"] * 4  # variables intact across the restart
    ids = second.command_ids()
    assert ids == uninterrupted.command_ids()
    assert Counter(ids).most_common(1)[0][1] == 1  # each command once across both engines
    assert second.stored == {}
    assert second.history.traces[-1].status == "finished"


def test_a_timer_fired_twice_around_a_crash_repeats_the_same_iteration_ids() -> None:
    # The engine publishes, then crashes before it replaces the record: the restarted engine
    # fires the same record again and derives the same ids (COMMANDS keeps one).
    first = started(BLINK)
    before = dict(first.stored)
    first.advance(T0 + timedelta(minutes=1))
    crashed = Bench(first.rules, first.now, first.tz, dict(first.states), before)
    crashed.advance(T0 + timedelta(minutes=1))
    assert crashed.command_ids() == first.command_ids()[1:]


WAIT_EACH = """
- id: rooms
  triggers: {trigger: event, event_type: announce}
  actions:
    - repeat:
        for_each: "{{ trigger.event.data.rooms }}"
        sequence:
          - wait_for_trigger:
              trigger: event
              event_type: ack
            timeout: 60
          - action: notify.notify
            data:
              room: "{{ repeat.item }}"
              ack: "{{ wait.trigger.event.data.by if wait.trigger else 'timeout' }}"
"""


def test_a_wait_inside_for_each_resumes_in_a_new_engine_with_its_items_and_wait() -> None:
    b = Bench(rules_of(WAIT_EACH, "automations.yaml"), T0)
    b.event("announce", T0, rooms=["kitchen", "den", "attic"])
    b.event("ack", T0 + timedelta(seconds=10), by="paul")
    assert b.data("ack") == ["paul"]
    restarted = b.restart()  # paused in the wait of the second item
    assert json.loads(next(iter(restarted.stored.values())))["loops"] == {
        "0": ["kitchen", "den", "attic"]
    }
    restarted.event("ack", T0 + timedelta(seconds=20), by="anne")
    restarted.advance(T0 + timedelta(minutes=5))  # the third item's wait times out
    assert list(zip(restarted.data("room"), restarted.data("ack"), strict=True)) == [
        ("kitchen", "paul"),
        ("den", "anne"),
        ("attic", "timeout"),
    ]
    assert Counter(restarted.command_ids()).most_common(1)[0][1] == 1


def test_a_queued_run_keeps_the_variables_rendered_when_it_was_triggered() -> None:
    text = """
- id: q
  mode: queued
  variables: {at: "{{ trigger.event.data.n }}"}
  triggers: {trigger: event, event_type: go}
  actions:
    - delay: 60
    - action: notify.notify
      data: {n: "{{ at }}"}
"""
    b = Bench(rules_of(text, "automations.yaml"), T0)
    b.event("go", T0, n=1)
    b.event("go", T0 + timedelta(seconds=5), n=2)  # queued behind the first
    restarted = b.restart()
    restarted.advance(T0 + timedelta(minutes=5))
    assert restarted.data("n") == [1, 2]


def test_a_run_whose_variables_are_too_big_to_keep_fails_at_its_pause() -> None:
    text = """
- id: big
  triggers: {trigger: event, event_type: go}
  actions:
    - variables:
        a: "{{ 'x' * 60000 }}"
        b: "{{ a }}"
        c: "{{ a }}"
        d: "{{ a }}"
        e: "{{ a }}"
    - delay: 60
    - action: notify.notify
"""
    b = Bench(rules_of(text, "automations.yaml"), T0)
    b.event("go", T0)
    assert b.stored == {}
    assert b.history.commands == []
    trace = b.history.traces[-1]
    assert trace.status == "failed"
    assert trace.reason.startswith("action.1: cannot pause: the run's variables")
    assert trace.reason.endswith("characters; a paused run keeps at most 262,144")
