"""One Home Assistant automation to a native rule definition, and where automations are.

A file is in HA's format when its top level is a list (``automations.yaml``), a mapping whose
keys are ``automation`` or ``automation <label>`` (a package, or ``configuration.yaml``), or a
single automation (a mapping without ``rules`` with a key of `SINGLE_KEYS`). A rule inside a native
``rules:`` list is read as HA's when it has a key only HA's format has (`is_ha_rule`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from ruby_rules.ha.kinds import Handler, copy, not_yet
from ruby_rules.ha.source import Native, Refusal, Writer
from ruby_rules.ha.translate import actions, conditions, triggers
from ruby_rules.processors.types import MAX_ID_LENGTH
from ruby_rules.yamldoc import Document, Location, Path

_AUTOMATION_KEY: Final = re.compile(r"automation(\s.*)?")
_HA_ONLY_KEYS: Final = frozenset(
    {"alias", "trigger", "condition", "action", "trigger_variables"}
    | {"initial_state", "max_exceeded", "use_blueprint", "trace"}
)
SINGLE_KEYS: Final = frozenset({"triggers", "trigger", "alias", "actions", "action"})
"""A mapping without ``rules`` that has one of these is one HA automation."""
_LOG_LEVELS: Final = frozenset(
    {"silent", "critical", "error", "warning", "info", "debug", "notset"}
)
# The three lists, each in HA's current spelling and its older one.
_LISTS: Final = (("triggers", "trigger"), ("conditions", "condition"), ("actions", "action"))


def automation_paths(top: object) -> list[Path] | None:
    """Where each automation of an HA-format document is; ``None`` if it is not HA's format.

    A package's other keys (``input_boolean:``...) are not automations: `foreign_keys` lists
    them, to be refused by name.
    """
    if isinstance(top, list):
        return [(i,) for i in range(len(top))]
    if not isinstance(top, dict) or "rules" in top:
        return None
    if any(_AUTOMATION_KEY.fullmatch(key) for key in top):
        paths: list[Path] = []
        for key in top:
            value = top[key]
            if not _AUTOMATION_KEY.fullmatch(key):
                continue
            if isinstance(value, list):
                paths.extend((key, i) for i in range(len(value)))
            else:
                paths.append((key,))
        return paths
    if SINGLE_KEYS & set(top):
        return [()]
    return None


def numbered_paths(top: object) -> list[tuple[Path, int]]:
    """Every HA automation of a document with its number, pasted ones in a native ``rules:``
    list included; the number is what `ruby_rules.ha.load.fallback_id` gets for it."""
    paths = automation_paths(top)
    if paths is not None:
        return [(path, number) for number, path in enumerate(paths, start=1)]
    found = top.get("rules") if isinstance(top, dict) else None
    if not isinstance(found, list):
        return []
    return [(("rules", i), i + 1) for i, item in enumerate(found) if is_ha_rule(item)]


def foreign_keys(top: object) -> list[str]:
    """The keys of an HA package that are not automations (nothing for a list)."""
    if not isinstance(top, dict) or not any(_AUTOMATION_KEY.fullmatch(key) for key in top):
        return []
    return [key for key in top if not _AUTOMATION_KEY.fullmatch(key)]


def is_ha_rule(item: object) -> bool:
    """Whether a rule of a native ``rules:`` list is written in HA's format.

    It is when it has a key only HA's format has (``alias``, ``trigger``, ``action``...), or
    when a trigger of its ``triggers`` names its kind with ``trigger:`` or ``platform:``.
    """
    if not isinstance(item, dict):
        return False
    if _HA_ONLY_KEYS & set(item):
        return True
    found = item.get("triggers")
    listed = found if isinstance(found, list) else [found]
    return any(isinstance(t, dict) and ("trigger" in t or "platform" in t) for t in listed)


@dataclass(frozen=True, slots=True)
class Translated:
    """An automation in the native form, its locations, and its problems."""

    native: Native
    values: dict[Path, Location]
    keys: dict[Path, Location]
    refusals: tuple[Refusal, ...]
    derived_id: str | None
    """How the id was made when the automation has none (``"from its alias"``...)."""

    @property
    def document(self) -> Document:
        """The native rule as a document whose locations are the HA text's."""
        return Document(self.native, self.values, self.keys)


def slug(text: str) -> str:
    """``Hallway light on!`` -> ``hallway_light_on``: a valid id, at most 64 characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:MAX_ID_LENGTH].strip("_")


def rule_id(item: dict[str, object], fallback: str) -> tuple[str | None, str | None]:
    """The automation's id, and how it was derived (``None`` when written).

    Without ``id``, it is the alias made an id (``slug``), else ``fallback``: deterministic,
    so a run's command ids stay the same across restarts.
    """
    if "id" in item:
        written = item["id"]
        is_number = isinstance(written, int) and not isinstance(written, bool)
        return (str(written) if is_number else written if isinstance(written, str) else None), None
    alias = item.get("alias")
    if isinstance(alias, str) and slug(alias):
        return slug(alias), "from its alias"
    return fallback, "from its place in the file"


def translate_automation(source: Document, base: Path, fallback_id: str) -> Translated:
    """The native rule for the HA automation at ``base`` of ``source``."""
    w = Writer(source, base)
    item = w.get(base)
    assert isinstance(item, dict)  # noqa: S101 - the loader passes mappings only
    out: Native = {}
    w.mark((), base)
    identifier, derived = rule_id(item, fallback_id)
    out["id"] = identifier
    w.mark(("id",), (*base, "id") if derived is None else (*base, "alias"))
    out["description"] = _description(item, identifier)
    w.mark(("description",), (*base, "alias") if "alias" in item else (*base, "description"))
    for new, old in _LISTS:
        if new in item and old in item:
            w.refuse((*base, old), f"give either '{new}' or '{old}' (the older spelling), not both")
    for key in item:
        handler = _FIELDS.get(key, copy(key))
        handler(w, (*base, key), (), out)
    return Translated(out, w.values, w.keys, tuple(w.refusals), derived)


def _description(item: dict[str, object], identifier: str | None) -> str:
    alias, description = item.get("alias"), item.get("description")
    parts = [part for part in (alias, description) if isinstance(part, str) and part.strip()]
    return ": ".join(parts) if parts else f"Home Assistant automation {identifier}"


def _list(name: str) -> Handler:
    translate = {"triggers": triggers, "conditions": conditions, "actions": actions}[name]

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        if name in out:  # both spellings: refused above, translated once
            return
        w.mark((name,), src)
        out[name] = translate(w, src, (name,))

    return handle


def _skip(w: Writer, src: Path, dst: Path, out: Native) -> None:
    """Read already (id, alias, description) or without effect on what runs (trace)."""


def _initial_state(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if value is False:
        w.not_yet(src, "an automation off at start", "leave it out", detail="initial_state: false")
    elif value is not True:
        w.expect(src, "true or false")


def _max_exceeded(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if not isinstance(value, str) or value.lower() not in _LOG_LEVELS:
        w.expect(src, f"one of {', '.join(sorted(_LOG_LEVELS))}")


def _variables(*, first: bool) -> Handler:
    """``variables`` (or, ``first``, ``trigger_variables``, which HA renders before them and
    which they may use or override) into the rule's ``variables``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        value = w.get(src)
        if not isinstance(value, dict):
            w.expect(src, "a mapping of variable names to values")
            return
        w.values.setdefault(("variables",), w.where(src))
        found = {key: w.copy((*src, key), ("variables", key)) for key in value}
        existing = out.get("variables")
        before = existing if isinstance(existing, dict) else {}
        out["variables"] = {**found, **before} if first else {**before, **found}

    return handle


_FIELDS: Final[dict[str, Handler]] = {
    "id": _skip,
    "alias": _skip,
    "description": _skip,
    "trace": _skip,
    "max_exceeded": _max_exceeded,
    "initial_state": _initial_state,
    "variables": _variables(first=False),
    "trigger_variables": _variables(first=True),
    "use_blueprint": not_yet("use_blueprint (a blueprint automation)"),
    **{key: _list(new) for new, old in _LISTS for key in (new, old)},
}
"""How each automation-level key translates; others (``mode``, ``max``, Ruby Core's own
``on_missed`` and ``backlog``) are copied and validated natively."""
