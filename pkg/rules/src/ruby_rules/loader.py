"""Load rule files: every good rule, and a located error for everything else.

A rule file is a YAML mapping with one key, ``rules``, holding a list of rules (see
``rules/README.md`` and ADR-0006). Loading never raises for bad content: a file that is not
readable YAML yields one error and no rules; a bad rule yields its errors and is skipped while
the file's other rules load; a rule whose id is already taken (in any file loaded together) is
refused with both locations. Pure and synchronous: no NATS, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ruby_rules import ha
from ruby_rules.errors import LoadError, at, capped, describe, show_path, validation_errors
from ruby_rules.files import MAX_FILE_BYTES, FileRefused, read_rule_file, shown_name
from ruby_rules.model import Rule, rule_config_type, rule_version
from ruby_rules.processors.types import MAX_ID_LENGTH, is_token
from ruby_rules.yamldoc import START, Document, YamlError, parse

RULE_FILE_GLOB = "*.yaml"
"""The files `load_dir` reads, in name order (not recursive)."""

__all__ = ["MAX_FILE_BYTES", "RULE_FILE_GLOB", "LoadResult", "load_dir", "load_file", "load_text"]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The rules that loaded and the errors found, each in file order."""

    rules: tuple[Rule, ...] = ()
    errors: tuple[LoadError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not self.errors


def load_file(path: Path | str, *, name: str | None = None) -> LoadResult:
    """Load one rule file; errors and rules name it ``name`` (default: ``path`` as given).

    Only a regular file of at most `MAX_FILE_BYTES` is read (`ruby_rules.files`); a pipe, a
    device, a directory or a larger file is one located error, found without blocking.
    """
    file = str(path) if name is None else name
    if shown_name(file) != file:  # it would forge lines in output and break JSON encoders
        message = "refused: the file name has control characters or bytes that are not UTF-8"
        return LoadResult(errors=(at(shown_name(file), START, f"{message}: rename it"),))
    try:
        raw = read_rule_file(path)
    except FileRefused as refused:
        return LoadResult(errors=(at(file, START, refused.message),))
    return load_text(raw, file)


def load_dir(directory: Path | str) -> LoadResult:
    """Load every ``*.yaml`` file of ``directory``, named relative to it; ids unique across all."""
    root = Path(directory)
    if not root.is_dir():
        return LoadResult(errors=(at(str(root), START, "expected a directory of rule files"),))
    results = [load_file(file, name=file.name) for file in sorted(root.glob(RULE_FILE_GLOB))]
    return _unique(
        [rule for r in results for rule in r.rules], [e for r in results for e in r.errors]
    )


def load_text(raw: bytes | str, file: str) -> LoadResult:
    """Load rules from the contents of one file named ``file``."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return LoadResult(errors=(_decode_error(raw, file, exc),))
    else:
        text = raw
    try:
        doc = parse(text)
    except YamlError as exc:
        return LoadResult(errors=(at(file, exc.where, exc.message),))
    if doc is None:
        return LoadResult(errors=(at(file, START, "empty file: expected a mapping with 'rules:'"),))
    return _load_document(doc, file)


def _load_document(doc: Document, file: str) -> LoadResult:
    if ha.is_ha_document(doc):  # Home Assistant's automations (ADR-0006: how it is told)
        ha_rules, ha_errors = ha.load_document(doc, file)
        ha_errors.sort(key=lambda error: (error.line, error.column))
        return _unique(ha_rules, capped(ha_errors))
    errors = [
        at(file, p.where, f"{show_path(p.path) + ': ' if p.path else ''}{p.message}")
        for p in doc.problems
        if p.path[:1] != ("rules",) or len(p.path) < 2
    ]
    top = doc.value
    if not isinstance(top, dict):
        message = (
            "expected a mapping with a 'rules' list, or Home Assistant automations (a list); "
            f"got {describe(top)}"
        )
        return LoadResult(errors=(*errors, at(file, START, message)))
    if "rules" not in top:
        message = "missing key 'rules': expected a mapping with a 'rules' list"
        return LoadResult(errors=(*errors, at(file, START, message)))
    if not isinstance(top["rules"], list):
        message = f"'rules' must be a list of rules; got {describe(top['rules'])}"
        return LoadResult(errors=(*errors, at(file, doc.values[("rules",)], message)))
    for key in top:
        if key != "rules":
            errors.append(at(file, doc.keys[(key,)], f"unknown key {key!r}: expected only 'rules'"))
    rules: list[Rule] = []
    for index, item in enumerate(top["rules"]):
        rule, rule_errors = _load_rule(doc, file, index, item)
        errors.extend(rule_errors)
        if rule is not None:
            rules.append(rule)
    errors.sort(key=lambda error: (error.line, error.column))
    return _unique(rules, capped(errors))


def _load_rule(
    doc: Document, file: str, index: int, item: object
) -> tuple[Rule | None, list[LoadError]]:
    base = ("rules", index)
    if ha.is_ha_rule(item):  # one automation in Home Assistant's format, pasted in
        return ha.load_automation(doc, file, base, ha.fallback_id(file, index + 1))
    written = item.get("id") if isinstance(item, dict) else None
    # A short id names the rule in messages, quoted; only a valid one goes into the error's
    # rule_id, which the engine puts in the subject of the rejection.
    rule_id = written if is_token(written) else None
    short = isinstance(written, str) and len(written) <= MAX_ID_LENGTH
    label = f"rule {written!r}" if short else f"rules[{index}]"
    errors = [
        at(file, p.where, f"{label}: {show_path(p.path[2:]) or 'rule'}: {p.message}", rule_id)
        for p in doc.problems
        if p.path[:2] == base
    ]
    where = doc.values[base]
    if not isinstance(item, dict):
        message = f"{label}: expected a mapping (one rule); got {describe(item)}"
        errors.append(at(file, where, message, rule_id))
    if errors:
        return None, errors
    try:
        config = rule_config_type().model_validate(item)
    except ValidationError as exc:
        return None, list(validation_errors(file, doc, base, exc, rule_id, label))
    return Rule(config, rule_version(config), file, where.line, where.column), []


def _unique(rules: Iterable[Rule], errors: list[LoadError]) -> LoadResult:
    # The first definition of an id wins (files in name order, then file order).
    first: dict[str, Rule] = {}
    for rule in rules:
        other = first.setdefault(rule.id, rule)
        if other is not rule:
            message = f"duplicate rule id {rule.id!r}: already defined at {other.where}"
            errors.append(LoadError(rule.file, rule.line, rule.column, message, rule.id))
    return LoadResult(tuple(first.values()), tuple(errors))


def _decode_error(raw: bytes, file: str, exc: UnicodeDecodeError) -> LoadError:
    before = raw[: exc.start]
    line = before.count(b"\n") + 1
    column = len(before) - (before.rfind(b"\n") + 1) + 1
    return LoadError(
        file, line, column, f"invalid UTF-8 (byte {raw[exc.start]:#04x}): expected UTF-8 text"
    )
