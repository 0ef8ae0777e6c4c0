"""The engine's rule set, file by file: what a (re)load adds, changes, removes or refuses.

A file is taken whole or not at all: a file with any error (bad YAML, a bad rule, an id that
another file already uses) is refused and the rules it had before keep running, so a typo
saved mid-edit never unloads a working automation. Pure: reads files, no NATS, no clock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ruby_rules.errors import LoadError
from ruby_rules.files import shown_name
from ruby_rules.loader import RULE_FILE_GLOB, LoadResult, load_file
from ruby_rules.model import Rule


@dataclass(frozen=True, slots=True)
class Change:
    """What one reload of one file did."""

    file: str
    loaded: tuple[Rule, ...] = ()
    """Rules new in this file."""
    changed: tuple[tuple[Rule, Rule], ...] = ()
    """(before, after) for rules whose definition changed."""
    unloaded: tuple[Rule, ...] = ()
    """Rules no longer defined (the file was deleted, or they were removed from it)."""
    rejected: tuple[LoadError, ...] = ()
    """Why the file was refused; its previous rules (``kept``) keep running."""
    kept: tuple[Rule, ...] = ()
    """When refused: the last good rules of the file, still running."""

    @property
    def empty(self) -> bool:
        """Nothing changed (the file was saved without changing any rule)."""
        return not (self.loaded or self.changed or self.unloaded or self.rejected)


@dataclass(slots=True)
class RuleSet:
    """The rules of a directory, by file; ``rules`` are those currently running."""

    directory: Path
    files: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    errors: dict[str, tuple[LoadError, ...]] = field(default_factory=dict)
    """The errors of files currently refused (cleared when the file loads again)."""

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every running rule, files in name order."""
        return tuple(rule for name in sorted(self.files) for rule in self.files[name])

    def names(self) -> list[str]:
        """The files `load_all` (re)loads: those present and those known, in name order."""
        present = {p.name for p in self.directory.glob(RULE_FILE_GLOB)}
        return sorted(present | set(self.files) | set(self.errors))

    def load_all(self) -> list[Change]:
        """(Re)load every rule file of the directory; also unloads files that disappeared."""
        return [self.reload(name) for name in self.names()]

    def reload(self, name: str) -> Change:
        """Reload the file ``name`` (relative to the directory), or unload it if it is gone."""
        return self.apply(name, self.read(name))

    def read(self, name: str) -> LoadResult | None:
        """Load the file ``name`` without changing the set; ``None`` when it is gone.

        Touches nothing of the set, so it may run in a worker thread while the set is in use
        (the engine reads there, so a large file never stalls its event loop). Never raises:
        a path that exists but is no regular file (a pipe, a device, a directory, a dangling
        link) is an error, so its last good rules keep running instead of being unloaded.
        """
        path = self.directory / name
        if not os.path.lexists(path):
            return None
        try:
            return load_file(path, name=name)
        except Exception as exc:  # a loader bug must not stop the engine: refuse the file
            message = f"could not be loaded ({type(exc).__name__}); the last good rules run"
            return LoadResult(errors=(LoadError(shown_name(name), 1, 1, message),))

    def apply(self, name: str, result: LoadResult | None) -> Change:
        """Take what `read` returned for ``name``: load, change, unload or refuse its rules."""
        before = self.files.get(name, ())
        if result is None:
            self.files.pop(name, None)
            self.errors.pop(name, None)
            return Change(shown_name(name), unloaded=before)
        errors = list(result.errors)
        taken = {rule.id: rule for other, rules in self.files.items() if other != name
                 for rule in rules}  # fmt: skip
        for rule in result.rules:
            other = taken.get(rule.id)
            if other is not None:
                errors.append(
                    LoadError(
                        rule.file,
                        rule.line,
                        rule.column,
                        f"duplicate rule id {rule.id!r}: already defined at {other.where}",
                        rule.id,
                    )
                )
        if errors:
            self.errors[name] = tuple(errors)
            return Change(shown_name(name), rejected=tuple(errors), kept=before)
        self.errors.pop(name, None)
        self.files[name] = result.rules
        old = {rule.id: rule for rule in before}
        new = {rule.id: rule for rule in result.rules}
        return Change(
            name,
            loaded=tuple(rule for rule_id, rule in new.items() if rule_id not in old),
            changed=tuple(
                (old[rule_id], rule)
                for rule_id, rule in new.items()
                if rule_id in old and old[rule_id].version != rule.version
            ),
            unloaded=tuple(rule for rule_id, rule in old.items() if rule_id not in new),
        )
