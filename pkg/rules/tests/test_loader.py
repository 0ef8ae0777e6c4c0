"""The loader: located errors for each kind of mistake, one bad rule skipped, ids unique."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from ruby_rules import LoadResult, load_dir, load_file, load_text

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"

GOOD = """\
  - id: {id}
    description: A good rule.
    triggers:
      - kind: state
        entity_id: binary_sensor.hallway_motion
        to: "on"
    actions:
      - kind: call
        service: light.turn_on
        target: {{entity_id: light.hallway}}
"""


def load(text: str, name: str = "r.yaml") -> LoadResult:
    return load_text(dedent(text), name)


def messages(result: LoadResult) -> list[str]:
    return [str(error) for error in result.errors]


def test_bad_yaml_is_located() -> None:
    result = load("rules:\n  - id: x\n    description: [unclosed\n")
    assert result.rules == ()
    [error] = result.errors
    assert (error.file, error.line, error.column) == ("r.yaml", 4, 1)
    assert "invalid YAML" in error.message


def test_invalid_utf8_is_located() -> None:
    result = load_text(b"rules:\n  - id: caf\xe9\n", "r.yaml")
    assert messages(result) == ["r.yaml:2:12: invalid UTF-8 (byte 0xe9): expected UTF-8 text"]


def test_unknown_kind_lists_the_known_ones() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace("kind: state", "kind: stat")
    [error] = load(text).errors
    assert str(error) == (
        "r.yaml:5:15: rule 'x': triggers[0]: unknown trigger kind 'stat': expected one of "
        "event, homeassistant, numeric_state, state, sun, template, time, time_pattern, webhook, "
        "zone"
    )
    assert error.rule_id == "x"


def test_missing_kind_lists_the_known_ones() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace("- kind: call\n        ", "- ")
    [error] = load(text).errors
    assert str(error) == (
        "r.yaml:9:9: rule 'x': actions[0]: missing field 'kind': expected one of the action "
        "kinds call, choose, delay, fire_event, if, parallel, publish, repeat, sequence, stop, "
        "variables, wait_for, wait_template"
    )


def test_wrong_type_names_the_field_path_and_its_line() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace('to: "on"', "to: {a: 1}")
    assert messages(load(text)) == [
        "r.yaml:7:13: rule 'x': triggers[0].to: input should be a valid tuple; got a mapping"
    ]


def test_missing_field_is_located_at_its_mapping() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace(
        "        entity_id: binary_sensor.hallway_motion\n", ""
    )
    assert messages(load(text)) == ["r.yaml:5:9: rule 'x': triggers[0]: missing field 'entity_id'"]


def test_unknown_field_is_located_at_its_key() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace('to: "on"', 'to: "on"\n        bogus: 1')
    assert messages(load(text)) == [
        "r.yaml:8:9: rule 'x': triggers[0].bogus: unknown field 'bogus'"
    ]


def test_invalid_entity_id_is_located_in_a_list() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace(
        "entity_id: light.hallway", "entity_id: [light.hallway, Light.Bad]"
    )
    [error] = load(text).errors
    assert (error.line, error.column) == (11, 45)
    assert error.message.startswith(
        "rule 'x': actions[0].target.entity_id[1]: invalid entity id 'Light.Bad': "
        "expected 'domain.object_id'"
    )


def test_invalid_rule_id_and_duration() -> None:
    text = "rules:\n" + GOOD.format(id="has space").replace(
        'to: "on"', 'to: "on"\n        for: 5 min'
    )
    assert messages(load(text)) == [
        "r.yaml:2:9: rule 'has space': id: invalid id 'has space': expected letters, digits, "
        "'_' or '-' only",
        "r.yaml:8:14: rule 'has space': triggers[0].for: invalid duration '5 min': expected a "
        "duration such as '30s', '5m', '1h', '1h30m', 'HH:MM:SS' or a number of seconds",
    ]


def test_nested_errors_are_located_through_kinds() -> None:
    # `state` is both the kind and a field of the state condition: the path must not confuse them.
    text = """\
    rules:
      - id: nested
        description: Nested processors.
        triggers: [{kind: time, at: "07:00"}]
        actions:
          - kind: choose
            options:
              - conditions:
                  - kind: not
                    conditions:
                      - kind: state
                        entity_id: light.a
                        state: [on, 5, {x: 1}]
                actions: [{kind: stop, reason: done}]
          - kind: wait_for
            timeout: 1m
            trigger: {kind: event, event_type: "a.b"}
    """
    assert messages(load(text)) == [
        "r.yaml:13:36: rule 'nested': actions[0].options[0].conditions[0].conditions[0].state[2]: "
        "input should be a valid string; got a mapping",
        "r.yaml:17:44: rule 'nested': actions[1].trigger.event_type: invalid id 'a.b': expected "
        "letters, digits, '_' or '-' only",
    ]


def test_mode_max_rules() -> None:
    text = "rules:\n" + GOOD.format(id="x").replace("    triggers:", "    max: 2\n    triggers:")
    assert messages(load(text)) == [
        "r.yaml:4:10: rule 'x': max: 'max' applies only to modes 'queued' and 'parallel', "
        "not 'single'"
    ]
    queued = load(
        "rules:\n"
        + GOOD.format(id="x").replace(
            "    triggers:", "    mode: queued\n    max: 2\n    triggers:"
        )
    )
    assert queued.ok
    assert queued.rules[0].config.max_runs == 2


def test_one_bad_rule_is_skipped_and_the_others_load() -> None:
    bad = GOOD.format(id="bad").replace("light.turn_on", "turn_on")
    text = "rules:\n" + GOOD.format(id="first") + bad + GOOD.format(id="last")
    result = load(text)
    assert [rule.id for rule in result.rules] == ["first", "last"]
    assert [(rule.line, rule.column) for rule in result.rules] == [(2, 5), (22, 5)]
    assert messages(result) == [
        "r.yaml:20:18: rule 'bad': actions[0].service: invalid service 'turn_on': expected "
        "'domain.service', such as 'light.turn_on'"
    ]


def test_a_yaml_problem_inside_one_rule_rejects_only_that_rule() -> None:
    text = (
        "rules:\n"
        + GOOD.format(id="a")
        + GOOD.format(id="b").replace(
            "    description: A good rule.\n",
            "    description: A good rule.\n    description: again\n",
        )
    )
    result = load(text)
    assert [rule.id for rule in result.rules] == ["a"]
    assert messages(result) == ["r.yaml:14:5: rule 'b': description: duplicate key 'description'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "r.yaml:1:1: empty file: expected a mapping with 'rules:'"),
        ("- a\n", "r.yaml:1:3: automation [0]: expected a mapping (one automation); got text"),
        (
            "5\n",
            "r.yaml:1:1: expected a mapping with a 'rules' list, or Home Assistant automations "
            "(a list); got a number",
        ),
        ("rule: []\n", "r.yaml:1:1: missing key 'rules': expected a mapping with a 'rules' list"),
        ("rules: 5\n", "r.yaml:1:8: 'rules' must be a list of rules; got a number"),
        ("rules:\n  - 5\n", "r.yaml:2:5: rules[0]: expected a mapping (one rule); got a number"),
        ("rules: []\nextra: 1\n", "r.yaml:2:1: unknown key 'extra': expected only 'rules'"),
        ("rules:\n  - &a [*a]\n", "r.yaml:2:5: rules[0]: [0]: an alias refers to its own ancestor"),
        ("rules: !!set {a}\n", "r.yaml:1:8: rules: unsupported YAML tag 'tag:yaml.org,2002:set'"),
    ],
)
def test_file_shape_errors(text: str, expected: str) -> None:
    assert messages(load(text))[0] == expected


def test_yaml_11_surprises_are_read_as_text() -> None:
    text = """\
    rules:
      - id: text
        description: on, off and clock times stay text.
        triggers:
          - {kind: state, entity_id: light.a, from: off, to: on}
          - {kind: time, at: [22:00, 7:30]}
        actions: [{kind: delay, duration: 01:30:00}]
    """
    [rule] = load(text).rules
    state, time = rule.config.triggers
    assert state.model_dump(by_alias=True)["to"] == ("on",)
    assert [str(at) for at in time.model_dump()["at"]] == ["22:00:00", "07:30:00"]


def test_duplicate_ids_across_files_name_both_locations(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n" + GOOD.format(id="same") + GOOD.format(id="x"))
    (tmp_path / "b.yaml").write_text("rules:\n" + GOOD.format(id="y") + GOOD.format(id="same"))
    (tmp_path / "notes.txt").write_text("not a rule file")
    result = load_dir(tmp_path)
    assert [(rule.file, rule.id) for rule in result.rules] == [
        ("a.yaml", "same"),
        ("a.yaml", "x"),
        ("b.yaml", "y"),
    ]
    assert messages(result) == [
        "b.yaml:12:5: duplicate rule id 'same': already defined at a.yaml:2:5"
    ]


def test_duplicate_ids_in_one_file() -> None:
    result = load("rules:\n" + GOOD.format(id="d") + GOOD.format(id="d"))
    assert len(result.rules) == 1
    assert messages(result) == ["r.yaml:12:5: duplicate rule id 'd': already defined at r.yaml:2:5"]


def test_errors_convert_to_the_rejection_contract() -> None:
    [error] = load("rules: 5\n").errors
    contract = error.to_contract()
    assert (contract.file, contract.line, contract.column) == ("r.yaml", 1, 8)


def test_load_file_reports_unreadable_paths(tmp_path: Path) -> None:
    assert messages(load_file(tmp_path / "missing.yaml", name="missing.yaml"))[0].startswith(
        "missing.yaml:1:1: cannot read the file"
    )
    assert messages(load_dir(tmp_path / "nope")) == [
        f"{tmp_path / 'nope'}:1:1: expected a directory of rule files"
    ]


def test_version_ignores_form_and_follows_meaning() -> None:
    a = load("rules:\n" + GOOD.format(id="v").replace('to: "on"', "to: 'on'\n        for: 5m"))
    b = load(
        "rules:\n" + GOOD.format(id="v").replace('to: "on"', "for: 00:05:00\n        to: [on]")
    )
    c = load("rules:\n" + GOOD.format(id="v").replace('to: "on"', "to: 'on'\n        for: 6m"))
    assert a.rules[0].version == b.rules[0].version != c.rules[0].version
    assert len(a.rules[0].version) == 16


def test_the_real_rules_folder_loads_without_errors() -> None:
    result = load_dir(RULES_DIR)
    assert messages(result) == []
    ids = {rule.id for rule in result.rules}
    assert {"hallway_light_on", "hallway_light_off"} <= ids
    off = next(rule for rule in result.rules if rule.id == "hallway_light_off")
    assert off.config.on_missed.policy == "run"
