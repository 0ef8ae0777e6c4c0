"""What became of each automation of HA-format files: loaded, or refused, and for what.

`survey` reads files the way the loader does and says, per automation, its rule id (and
whether it was derived), where it is, whether it loads, and which features Ruby Core does
not support yet it needs. `Survey.summary` is the one-line account that ``rubyctl rules
import-ha`` prints and the README quotes for the corpus (a test keeps the two equal).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ruby_rules.files import FileRefused, read_rule_file
from ruby_rules.ha.automation import numbered_paths, translate_automation
from ruby_rules.ha.load import fallback_id
from ruby_rules.ha.source import value_at
from ruby_rules.loader import load_file
from ruby_rules.yamldoc import START, YamlError, parse


@dataclass(frozen=True, slots=True)
class Automation:
    """One automation of a file and what became of it."""

    file: str
    line: int
    rule_id: object
    """The id it loads under (as written, or derived); not necessarily a valid one."""
    derived: str | None
    """How the id was derived when the automation has none (``"from its alias"``)."""
    loaded: bool
    needs: tuple[str, ...]
    """The features it uses that Ruby Core does not support yet, each once."""


@dataclass(frozen=True, slots=True)
class Survey:
    """Every automation of some files, in file order."""

    automations: tuple[Automation, ...]

    @property
    def loaded(self) -> int:
        """How many load."""
        return sum(a.loaded for a in self.automations)

    def needs(self) -> Counter[str]:
        """For each feature not supported yet, how many automations need it."""
        return Counter(feature for a in self.automations for feature in a.needs)

    def summary(self) -> str:
        """``45 of 80 automations load; the others need: repeat action (4), ...``."""
        total, loaded = len(self.automations), self.loaded
        text = f"{loaded} of {total} automation{'' if total == 1 else 's'} load"
        needs = sorted(self.needs().items(), key=lambda item: (-item[1], item[0]))
        if needs:
            text += "; the others need: " + ", ".join(f"{f} ({n})" for f, n in needs)
        other = sum(not a.loaded and not a.needs for a in self.automations)
        if other:
            text += f"; {other} ha{'s' if other == 1 else 've'} other errors"
        return text


def survey(files: Iterable[Path]) -> Survey:
    """What becomes of every automation of ``files`` (each named by its path as given).

    A file that cannot be read or parsed, or is not in HA's format, adds no automations.
    """
    found: list[Automation] = []
    for path in files:
        name = str(path)
        loaded = {rule.line: rule for rule in load_file(path).rules}
        try:
            doc = parse(read_rule_file(path).decode("utf-8-sig"))
        except (FileRefused, YamlError, UnicodeDecodeError):
            continue
        for base, number in [] if doc is None else numbered_paths(doc.value):
            if doc is None or not isinstance(value_at(doc.value, base), dict):
                continue
            translated = translate_automation(doc, base, fallback_id(name, number))
            line = doc.values.get(base, START).line
            needs = dict.fromkeys(r.feature for r in translated.refusals if r.feature)
            found.append(
                Automation(
                    name,
                    line,
                    translated.native.get("id"),
                    translated.derived_id,
                    line in loaded,
                    tuple(feature for feature in needs if feature is not None),
                )
            )
    return Survey(tuple(found))
