"""Load errors: each names the file, line and column and says what was expected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry
from ruby_rules.yamldoc import START, Document, Location, Path
from ruby_schemas.rules import RuleError

_ROLE_OF_FIELD: dict[str, Role] = {
    "triggers": "trigger",
    "trigger": "trigger",
    "conditions": "condition",
    "actions": "action",
    "then": "action",
    "else": "action",
    "default": "action",
}
_YAML_TYPES = {
    "dict": "a mapping",
    "list": "a list",
    "str": "text",
    "int": "a number",
    "float": "a number",
    "bool": "true/false",
    "NoneType": "nothing",
}


@dataclass(frozen=True, slots=True)
class LoadError:
    """One problem in a rule file. ``str()`` gives ``file:line:column: message``."""

    file: str
    line: int
    column: int
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"

    def to_contract(self) -> RuleError:
        """The error as the `ruby_schemas.rules.RuleError` of a ``rule.rejected.v1`` event."""
        return RuleError(file=self.file, line=self.line, column=self.column, message=self.message)


MAX_MESSAGE: Final = 500
"""Characters of one error message: a hostile file's 100,000-character key is quoted cut."""
MAX_ERRORS: Final = 100
"""Errors reported for one file; the rest are counted (`capped`), so that a file of 60,000
broken rules gives a refusal small enough to log, audit and announce."""


def at(file: str, where: Location, message: str, rule_id: str | None = None) -> LoadError:
    """A `LoadError` at ``where``: one printable line (a control character, such as a terminal
    escape written ``"\\e"`` in YAML, is shown escaped), cut at `MAX_MESSAGE` characters."""
    if not message.isprintable():
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return LoadError(file, where.line, where.column, message, rule_id)


def capped(errors: list[LoadError]) -> list[LoadError]:
    """The first `MAX_ERRORS` - 1 errors, then one saying how many more there are."""
    if len(errors) <= MAX_ERRORS:
        return errors
    rest = errors[MAX_ERRORS - 1 :]
    first = rest[0]
    more = f"{len(rest)} more errors from here on, not shown (at most {MAX_ERRORS} per file)"
    return [*errors[: MAX_ERRORS - 1], LoadError(first.file, first.line, first.column, more)]


def show_path(path: Path) -> str:
    """``triggers[0].entity_id`` for ``("triggers", 0, "entity_id")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def role_at(path: Path) -> Role | None:
    """The processor role of the list (or field) that holds the item at ``path``."""
    for part in reversed(path):
        if isinstance(part, str):
            return _ROLE_OF_FIELD.get(part)
    return None


def validation_errors(
    file: str, doc: Document, base: Path, exc: ValidationError, rule_id: str | None, label: str
) -> Iterator[LoadError]:
    """Translate pydantic's errors for the rule at ``base`` into located `LoadError`s.

    ``label`` opens each message (``rule 'x'``). A list's "too short" error is dropped when an
    item of that list has its own error: the item's error is the one worth reading.
    """
    errors = exc.errors(include_url=False)
    for error in errors:
        loc = error["loc"]
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors
        ):
            continue
        path, rest = _yaml_path(doc, base, loc)
        where, message = _explain(doc, path, rest, error)
        shown = show_path(path[len(base) :])
        yield at(file, where, f"{label}: {shown + ': ' if shown else ''}{message}", rule_id)


def describe(value: object) -> str:
    """How a YAML value reads to the person who wrote it: ``a mapping``, ``a list``, ``text``."""
    name = type(value).__name__
    return _YAML_TYPES.get(name, name)


def _yaml_path(doc: Document, base: Path, loc: tuple[int | str, ...]) -> tuple[Path, list[Any]]:
    # Follow pydantic's location through the document. A union tag (the kind, such as "state",
    # right after the item it selects) is skipped; so are parts the document lacks (a missing
    # field's name), which are returned as the rest.
    path: Path = base
    rest: list[Any] = []
    tagged: Path | None = None
    for part in loc:
        if tagged != path and not rest and _kind_at(doc.value, path) == part:
            tagged = path
        elif not rest and (*path, part) in doc.values:
            path = (*path, part)
        else:
            rest.append(part)
    return path, rest


def _kind_at(value: object, path: Path) -> object:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value.get("kind") if isinstance(value, dict) else None


def _explain(
    doc: Document, path: Path, rest: list[Any], error: ErrorDetails
) -> tuple[Location, str]:
    where = doc.values.get(path, START)
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing" and rest:
        return where, f"missing field {rest[-1]!r}"
    if kind == "extra_forbidden":
        return doc.keys.get(path, where), f"unknown field {path[-1]!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        role = role_at(path) or "processor"
        known = ", ".join(default_registry().kinds(role)) if role != "processor" else ""
        if kind == "union_tag_not_found":
            return where, f"missing field 'kind': expected one of the {role} kinds {known}"
        return (
            doc.values.get((*path, "kind"), where),
            f"unknown {role} kind {ctx.get('tag')!r}: expected one of {known}",
        )
    message = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_type":
        message = f"{message}; got {describe(error['input'])}"
    return where, message[0].lower() + message[1:] if message else "invalid value"
