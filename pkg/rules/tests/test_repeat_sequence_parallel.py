"""``repeat`` (count, while, until, for_each), ``sequence``, ``parallel``, the ``wait``
variable, as Home Assistant's documentation gives their results; the bound on iterations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.engine.interpreter import MAX_ITERATIONS, MAX_STRETCH_ITERATIONS
from ruby_rules.testing import Bench, by_status, rules_of
from ruby_schemas.rules import RuleFiredV1

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
HEAD = """
- id: r
  mode: queued
  triggers: {trigger: event, event_type: go}
  actions:
"""


def run(actions: str, **states: str) -> Bench:
    b = Bench(rules_of(HEAD + actions, "automations.yaml"), T0)
    for entity, value in states.items():
        b.change(entity.replace("__", "."), value, T0 - timedelta(hours=1))
    b.event("go", T0)
    return b


NOTE = '          - action: notify.notify\n            data: {{n: "{value}"}}\n'


def test_count_runs_its_sequence_with_index_first_and_last_and_a_command_id_each() -> None:
    body = NOTE.format(value="{{ repeat.index }} {{ repeat.first }} {{ repeat.last }}")
    b = run('    - repeat:\n        count: "{{ 1 + 2 }}"\n        sequence:\n' + body)
    assert b.data("n") == ["1 True False", "2 False False", "3 False True"]
    assert len(set(b.command_ids())) == 3
    [trace] = b.history.traces
    paths = [step.path for step in trace.steps if step.kind == "call"]
    assert paths == ["action.0.0.0", "action.0.1.0", "action.0.2.0"]  # the iteration is a branch
    assert trace.steps[-1].result == "done after 3 iterations"


def test_while_checks_before_and_until_after_each_iteration() -> None:
    loop = (
        '    - repeat:\n        {test}:\n          - "{{{{ repeat.index {op} 3 }}}}"\n'
        "        sequence:\n"
    )
    body = NOTE.format(value="{{ repeat.index }}")
    assert run(loop.format(test="while", op="<=") + body).data("n") == [1, 2, 3]
    assert run(loop.format(test="until", op=">=") + body).data("n") == [1, 2, 3]
    never = run(loop.format(test="while", op=">") + body)  # false at once: no iteration
    assert never.data("n") == []
    once = run(loop.format(test="until", op="<") + body)  # true at once: one iteration
    assert once.data("n") == [1]


def test_for_each_iterates_items_rendered_once_from_a_list_or_a_template() -> None:
    body = NOTE.format(value="{{ repeat.item }}-{{ repeat.index }}-{{ repeat.last }}")
    listed = run("    - repeat:\n        for_each: [kitchen, \"{{ 'hall' }}\"]\n        sequence:\n"
                 + body)  # fmt: skip
    assert listed.data("n") == ["kitchen-1-False", "hall-2-True"]
    rendered = run("    - repeat:\n        for_each: \"{{ states('sensor.rooms').split(',') }}\"\n"
                   "        sequence:\n" + body, sensor__rooms="a,b,c")  # fmt: skip
    assert rendered.data("n") == ["a-1-False", "b-2-False", "c-3-True"]
    item = NOTE.format(value="{{ repeat.item.room }} {{ repeat.item.level }}")
    mapping = run(
        "    - repeat:\n        for_each: [{room: den, level: 3}]\n        sequence:\n" + item
    )
    assert mapping.data("n") == ["den 3"]
    text = run("    - repeat:\n        for_each: \"{{ 'abc' }}\"\n        sequence:\n" + body)
    assert "gave 'abc': expected a list" in by_status(text.history)["failed"][0]


def test_nested_repeats_see_their_own_repeat_variable() -> None:
    b = run("""\
    - repeat:
        count: 2
        sequence:
          - variables: {outer: "{{ repeat.index }}"}
          - repeat:
              for_each: [a, b]
              sequence:
                - action: notify.notify
                  data: {n: "{{ outer }}{{ repeat.item }}"}
""")
    assert b.data("n") == ["1a", "1b", "2a", "2b"]
    assert len(set(b.command_ids())) == 4


def test_a_while_that_never_ends_stops_at_the_bound_and_the_engine_goes_on() -> None:
    b = run("    - repeat:\n        while: \"{{ true }}\"\n        sequence:\n"
            "          - variables: {x: 1}\n    - action: light.turn_on\n")  # fmt: skip
    assert b.history.commands == []
    [reason] = by_status(b.history)["failed"]
    assert reason == (
        f"action.0: more than {MAX_STRETCH_ITERATIONS:,} iterations between two pauses"
    )
    assert [event.what for event in b.history.rule_events] == ["fired", "failed"]
    assert len(b.history.traces[-1].steps) <= 500  # the trace (and record) stays small
    b.event("go", T0 + timedelta(minutes=1))  # the next run starts, and fails the same way
    assert len(by_status(b.history)["failed"]) == 2


def test_a_repeat_stops_at_its_bound_across_pauses_and_a_stretch_at_its_calls() -> None:
    b = run("    - repeat:\n        while: \"{{ true }}\"\n        sequence:\n"
            "          - delay: 1\n")  # fmt: skip
    [key] = b.stored
    record = json.loads(b.stored[key])
    assert record["resume_after"] == [0, 0, 0]
    record["resume_after"] = [0, MAX_ITERATIONS - 1, 0]  # as if 9,999 iterations had passed
    b.stored[key] = json.dumps(record).encode()
    resumed = b.restart()
    resumed.advance(T0 + timedelta(seconds=1))
    assert by_status(resumed.history)["failed"] == [
        f"action.0: more than {MAX_ITERATIONS:,} iterations of one repeat"
    ]
    calls = run("    - repeat:\n        count: 600\n        sequence:\n"
                "          - action: notify.a\n          - action: notify.b\n")  # fmt: skip
    assert len(calls.history.commands) == 1000  # what came before the bound is sent
    assert by_status(calls.history)["failed"] == [
        "action.0.500.0: more than 1,000 calls and events between two pauses"
    ]
    [fired] = [event.payload for event in calls.history.rule_events if event.what == "fired"]
    assert isinstance(fired, RuleFiredV1)
    assert len(fired.command_ids) == 1000
    assert len(calls.history.traces[-1].command_ids) == 499  # the trace keeps 100 + the latest


def test_sequence_and_parallel_run_every_action_once_in_order() -> None:
    b = run("""\
    - parallel:
        - action: notify.a
        - sequence:
            - variables: {who: b}
            - action: notify.b
              data: {n: "{{ who }}"}
        - action: notify.c
    - action: notify.d
      data: {n: "{{ who }}"}
""")
    assert [(c.service, c.data.get("n")) for c in b.history.commands] == [
        ("a", None),
        ("b", "b"),
        ("c", None),
        ("d", "b"),  # set in a branch, defined for the whole run (as in HA)
    ]


def test_a_parallel_branch_that_pauses_is_refused_where_it_is_written() -> None:
    text = HEAD + "    - parallel:\n        - action: notify.a\n        - sequence:\n" \
        "            - delay: 5\n"  # fmt: skip
    [error] = load_text(text, "automations.yaml").errors
    assert error.line == 6
    assert "branch 1 (sequence) of a parallel action pauses the run" in error.message


def test_the_wait_variable_after_a_wait_for_trigger_and_after_its_timeout() -> None:
    actions = """\
    - wait_for_trigger: {trigger: state, entity_id: binary_sensor.door, to: "off"}
      timeout: "00:10:00"
    - action: notify.notify
      data:
        n: "{{ wait.trigger.to_state.state if wait.trigger else 'timeout' }}"
        left: "{{ wait.remaining }}"
"""
    b = run(actions, binary_sensor__door="on")
    b.change("binary_sensor.door", "off", T0 + timedelta(minutes=4))
    assert b.data("n") == ["off"]
    assert b.data("left") == [360.0]
    late = run(actions, binary_sensor__door="on")
    late.advance(T0 + timedelta(minutes=10))
    assert (late.data("n"), late.data("left")) == (["timeout"], [0.0])


def test_the_wait_variable_after_a_wait_on_a_time_trigger() -> None:
    b = run("""\
    - wait_for_trigger: {trigger: time, at: "18:05:00"}
      timeout: "01:00:00"
    - action: notify.notify
      data: {n: "{{ wait.trigger.platform }}", left: "{{ wait.remaining }}"}
""")
    b.advance(T0 + timedelta(minutes=5))
    assert (b.data("n"), b.data("left")) == (["time"], [None])
