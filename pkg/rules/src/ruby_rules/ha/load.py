"""Loading HA automations as rules, with the native loader's located errors.

Each automation is translated (`ruby_rules.ha.automation`), then validated as a native rule
whose every value carries the line and column of the HA text it came from: an error in a
translated field reads ``file:line:column: rule 'id': triggers[0].to: ...`` at the HA line.
One bad automation is refused alone, as a bad native rule is.
"""

from __future__ import annotations

from pydantic import ValidationError

from ruby_rules.errors import LoadError, at, describe, show_path, validation_errors
from ruby_rules.ha.automation import automation_paths, foreign_keys, slug, translate_automation
from ruby_rules.ha.source import value_at
from ruby_rules.model import Rule, rule_config_type, rule_version
from ruby_rules.processors.types import MAX_ID_LENGTH, is_token
from ruby_rules.yamldoc import START, Document, Path


def is_ha_document(doc: Document) -> bool:
    """Whether the whole file is in HA's format (see `ruby_rules.ha.automation`)."""
    return automation_paths(doc.value) is not None


def load_document(doc: Document, file: str) -> tuple[list[Rule], list[LoadError]]:
    """Every automation of an HA-format document: the rules that load and every error."""
    paths = automation_paths(doc.value) or []
    errors: list[LoadError] = [
        at(file, p.where, f"{show_path(p.path) + ': ' if p.path else ''}{p.message}")
        for p in doc.problems
        if not any(p.path[: len(base)] == base and len(p.path) > len(base) for base in paths)
    ]
    for key in foreign_keys(doc.value):
        message = f"'{key}' is not an automation: only the 'automation' keys of a package are read"
        errors.append(at(file, doc.keys.get((key,), START), message))
    rules: list[Rule] = []
    for number, base in enumerate(paths, start=1):
        rule, rule_errors = load_automation(doc, file, base, fallback_id(file, number))
        errors.extend(rule_errors)
        if rule is not None:
            rules.append(rule)
    return rules, errors


def fallback_id(file: str, number: int) -> str:
    """The id of the ``number``-th automation of ``file`` (from 1) when it has no id or alias."""
    stem = slug(file.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".yaml"))
    return f"{stem or 'automation'}_{number}"


def load_automation(
    doc: Document, file: str, base: Path, fallback_id: str
) -> tuple[Rule | None, list[LoadError]]:
    """The automation at ``base`` as a rule, or the errors that refuse it.

    Without an ``id`` it gets one derived from its alias (or ``fallback_id``), and every
    message about it says so.
    """
    item = value_at(doc.value, base)
    where = doc.values.get(base, START)
    if not isinstance(item, dict):
        label = f"automation {show_path(base) or '(the file)'}"
        message = f"{label}: expected a mapping (one automation); got {describe(item)}"
        return None, [at(file, where, message)]
    translated = translate_automation(doc, base, fallback_id)
    written = translated.native.get("id")
    rule_id = written if is_token(written) else None
    short = isinstance(written, str) and len(written) <= MAX_ID_LENGTH
    label = f"rule {written!r}" if short else f"automation {show_path(base) or '(the file)'}"
    if translated.derived_id is not None:
        label += f" (id derived {translated.derived_id})"
    errors = [
        at(
            file,
            p.where,
            f"{label}: {show_path(p.path[len(base) :]) or 'automation'}: {p.message}",
            rule_id,
        )
        for p in doc.problems
        if p.path[: len(base)] == base and len(p.path) > len(base)
    ]
    errors += [
        at(
            file,
            r.where,
            f"{label}: {show_path(r.path) + ': ' if r.path else ''}{r.message}",
            rule_id,
        )
        for r in translated.refusals
    ]
    if errors:  # what a refusal left out would only cause more errors, about nothing
        return None, errors
    try:
        config = rule_config_type().model_validate(translated.native)
    except ValidationError as exc:
        return None, list(validation_errors(file, translated.document, (), exc, rule_id, label))
    return Rule(config, rule_version(config), file, where.line, where.column), []
