"""Fuzz: malformed rule files never make the loader raise, and each gets a located error.

Every mutation below is one that certainly breaks a valid file (a required field deleted, an
unknown key, a wrong type, an unknown kind, a duplicated id, a byte that is not UTF-8 or not
allowed in YAML, a line YAML cannot scan), so each generated file must yield at least one
error, located inside the file. 1,000 examples run in about ten seconds: the mutations
are cheap and the loader is pure.
The bases are the real rules in ``rules/``, two per file.
"""

from __future__ import annotations

import copy
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruby_rules import LoadResult, load_text
from ruby_rules.engine import RuleEngine
from ruby_rules.ruleset import RuleSet

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"
_RULES = [
    rule
    for path in sorted(RULES_DIR.glob("*.yaml"))
    for rule in yaml.safe_load(path.read_text())["rules"]
]
# Two-rule files (each real rule with its neighbour): small, so 1,000 examples stay fast.
BASES: list[dict[str, Any]] = [
    {"rules": [rule, _RULES[(i + 1) % len(_RULES)]]} for i, rule in enumerate(_RULES)
]
GOOD_FILE = yaml.safe_dump({"rules": _RULES}, width=1 << 20).encode()
OTHER_FILE = b"""rules:
  - id: fuzz_bystander
    description: a rule in another file, which no save of fuzz.yaml may disturb
    triggers: [{kind: event, event_type: fuzz_ping}]
    actions: [{kind: publish, event_type: fuzz_pong}]
"""
REQUIRED_RULE_KEYS = ("id", "description", "triggers", "actions")
WRONG_VALUES: list[Any] = [17, -1.5, True, None, [1, [2]], {"nested": {"x": 1}}]
STRUCTURAL = ("unknown_key", "delete", "wrong_type", "unknown_kind", "duplicate_id")
TEXTUAL = ("garbage_byte", "forbidden_char", "broken_line")


def processors(value: Any) -> list[dict[str, Any]]:
    """Every mapping with a ``kind`` (a trigger, condition or action), depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if "kind" in value:
            found.append(value)
        for item in value.values():
            if item is not value.get("data") and item is not value.get("event_data"):
                found.extend(processors(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(processors(item))
    return found


@st.composite
def malformed(draw: st.DrawFn) -> bytes:
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    rules: list[dict[str, Any]] = data["rules"]
    mutations = draw(st.lists(st.sampled_from(STRUCTURAL + TEXTUAL), min_size=1, max_size=3))
    for mutation in (m for m in mutations if m in STRUCTURAL):
        rule = draw(st.sampled_from(rules))
        target = draw(st.sampled_from([rule, *processors(rule)]))
        if mutation == "unknown_key":
            target[draw(st.sampled_from(["zz", "typo", "enabled", "entity"]))] = 1
        elif mutation == "delete":
            key = "kind" if "kind" in target else draw(st.sampled_from(REQUIRED_RULE_KEYS))
            target.pop(key, None)
        elif mutation == "wrong_type":
            key = "kind" if "kind" in target else draw(st.sampled_from(REQUIRED_RULE_KEYS))
            target[key] = draw(st.sampled_from(WRONG_VALUES))
        elif mutation == "unknown_kind":
            processor = draw(st.sampled_from(processors(rules) or [rule]))
            processor["kind"] = draw(st.sampled_from(["teleport", "State", "", "state "]))
        elif mutation == "duplicate_id":
            rules.append(copy.deepcopy(rule))
    # One line per scalar (no folding), so an inserted line can never land inside a string.
    text = yaml.safe_dump(data, sort_keys=draw(st.booleans()), width=1 << 20).encode()
    for mutation in (m for m in mutations if m in TEXTUAL):
        at = draw(st.integers(0, len(text)))
        if mutation == "garbage_byte":
            text = (
                text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80\x80"])) + text[at:]
            )
        elif mutation == "forbidden_char":
            text = text[:at] + draw(st.sampled_from([b"\x00", b"\x07", b"\x1b"])) + text[at:]
        else:
            lines = text.split(b"\n")
            index = draw(st.integers(0, len(lines)))
            bad = draw(st.sampled_from([b"@reserved: x", b"`tick", b"x: [unclosed", b"]"]))
            text = b"\n".join([*lines[:index], bad, *lines[index:]])
    return text


def assert_located(result: LoadResult, raw: bytes) -> None:
    lines = raw.count(b"\n") + 1
    for error in result.errors:
        assert error.file == "fuzz.yaml"
        assert 1 <= error.line <= lines + 1, str(error)
        assert error.column >= 1, str(error)
        assert error.message.strip(), str(error)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_rule_files_give_located_errors(raw: bytes) -> None:
    result = load_text(raw, "fuzz.yaml")
    assert result.errors, raw.decode(errors="replace")
    assert_located(result, raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    result = load_text(raw, "fuzz.yaml")
    assert_located(result, raw)
    assert result.errors or result.rules == ()


def test_an_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    raw = ("\n".join(lines) + "\nrules: []\n").encode()
    [error] = load_text(raw, "fuzz.yaml").errors
    assert "too many values" in error.message


def test_deep_nesting_is_refused() -> None:
    raw = b"rules: " + b"[" * 5000 + b"]" * 5000
    result = load_text(raw, "fuzz.yaml")
    assert result.errors
    assert_located(result, raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_a_malformed_file_saved_over_a_good_one_keeps_the_good_rules_running(raw: bytes) -> None:
    """What the engine does on every save: the file is refused whole, nothing else changes."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "fuzz.yaml").write_bytes(GOOD_FILE)
        (root / "other.yaml").write_bytes(OTHER_FILE)
        ruleset = RuleSet(root)
        assert all(not change.rejected for change in ruleset.load_all())
        running = ruleset.rules
        (root / "fuzz.yaml").write_bytes(raw)
        change = ruleset.reload("fuzz.yaml")
        assert change.rejected
        assert change.kept == tuple(r for r in running if r.file == "fuzz.yaml")
        assert ruleset.rules == running
        engine = RuleEngine(tz=UTC)
        engine.set_rules(ruleset.rules, datetime.now(UTC))
        assert set(engine.rules) == {rule.id for rule in running}
