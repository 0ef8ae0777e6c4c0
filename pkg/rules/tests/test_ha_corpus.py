"""The corpus of Home Assistant automations (rules/examples/ha): each one marked
``# refused: <error>`` is refused with that error at its own lines; every other one loads.
The README quotes the survey of the corpus word for word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ruby_rules import load_file
from ruby_rules.ha.report import Automation, survey

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "rules" / "examples" / "ha"
FILES = sorted(CORPUS.glob("*.yaml"))
_REFUSED = re.compile(r"\s*# refused: (.+)")


def expectations(path: Path, automations: list[Automation]) -> dict[int, str | None]:
    """For each automation's first line, the refusal its comment announces (or None)."""
    lines = path.read_text().splitlines()
    found: dict[int, str | None] = {}
    for automation in automations:
        above = lines[automation.line - 2] if automation.line >= 2 else ""
        match = _REFUSED.fullmatch(above)
        found[automation.line] = match.group(1) if match else None
    return found


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_each_automation_loads_or_is_refused_with_its_announced_error(path: Path) -> None:
    automations = list(survey([path]).automations)
    assert automations, f"{path.name} has no automations"
    result = load_file(path, name=path.name)
    starts = [*sorted(a.line for a in automations), 10**9]
    loaded_lines = {rule.line for rule in result.rules}
    expected_of = expectations(path, automations)
    for automation in automations:
        expected = expected_of[automation.line]
        end = next(line for line in starts if line > automation.line)
        errors = [str(e) for e in result.errors if automation.line <= e.line < end]
        if expected is None:
            assert automation.line in loaded_lines, errors
            assert not errors
        else:
            assert automation.line not in loaded_lines
            assert any(expected in error for error in errors), (expected, errors)
            assert all(error.startswith(f"{path.name}:") for error in errors)
            assert automation.needs, errors  # a refusal by feature, counted as such


def test_the_corpus_is_large_and_uses_both_spellings() -> None:
    found = survey(FILES)
    assert len(found.automations) >= 60
    assert found.loaded >= 40
    text = "\n".join(path.read_text() for path in FILES)
    for spelling in ("- trigger: ", "- platform: ", "  action:\n", "- service: ", "- action: "):
        assert spelling in text, spelling


def test_the_readme_states_the_surveyed_numbers() -> None:
    summary = survey(FILES).summary()
    readme = (ROOT / "README.md").read_text()
    assert f"rules/examples/ha`: {summary}." in " ".join(readme.split())
