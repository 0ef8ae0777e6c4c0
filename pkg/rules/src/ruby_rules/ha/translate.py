"""Lists of HA triggers, conditions and actions to native ones, dispatched by the tables.

Each function reads the HA list (or single item, as HA also accepts) at a source path and
returns the native list, dropping items that say ``enabled: false`` as HA does. What cannot
be translated is refused on the writer, with its place; the rest is still translated so
that one run reports every problem of an automation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ruby_rules.ha.kinds import Handler, Kind, translate
from ruby_rules.ha.source import Native, Writer, is_template
from ruby_rules.yamldoc import Path

if TYPE_CHECKING:
    from types import ModuleType


def _tables() -> ModuleType:
    # Imported here, not at the top: the tables nest these very functions (`choose` holds
    # conditions and actions), so the two modules refer to each other.
    from ruby_rules.ha import features

    return features


def triggers(w: Writer, src: Path, dst: Path) -> list[Native]:
    """The native triggers of the HA trigger list (or single trigger) at ``src``."""
    out: list[Native] = []
    for item in w.items(src):
        native = trigger(w, item, (*dst, len(out)))
        if native is not None:
            out.append(native)
    return out


def trigger(w: Writer, src: Path, dst: Path) -> Native | None:
    """The native trigger for the HA trigger at ``src``; ``None`` if left out or refused."""
    item = w.get(src)
    if not isinstance(item, dict):
        w.expect(src, "a mapping (one trigger, such as {trigger: state, entity_id: ...})")
        return None
    if not w.enabled(src):
        return None
    named = [key for key in ("trigger", "platform") if key in item]
    if len(named) != 1:
        message = "give either 'trigger' or 'platform' (the older spelling), not both"
        w.refuse(src, message if named else "missing 'trigger' (or 'platform'): which trigger")
        return None
    tables = _tables()
    key = named[0]
    name = item[key]
    kind = tables.TRIGGERS.get(name) if isinstance(name, str) else None
    if kind is None:
        known = ", ".join(sorted(tables.TRIGGERS))
        w.refuse((*src, key), f"unknown trigger {name!r}: expected one of {known}", at_key=False)
        return None
    common = {**tables.TRIGGER_COMMON, key: _skip}
    return _translate(w, kind, src, dst, f"{name} trigger", key, common)


def conditions(w: Writer, src: Path, dst: Path) -> list[Native]:
    """The native conditions of the HA condition list (or single one, or template) at ``src``."""
    out: list[Native] = []
    for item in w.items(src):
        native = condition(w, item, (*dst, len(out)))
        if native is not None:
            out.append(native)
    return out


def condition(w: Writer, src: Path, dst: Path) -> Native | None:
    """The native condition for the HA condition at ``src``; ``None`` if left out or refused.

    Besides ``condition: <name>``, HA's shorthands: a template as text, and ``and:``, ``or:``,
    ``not:`` holding the conditions.
    """
    item = w.get(src)
    if isinstance(item, str):
        if not is_template(item):
            w.expect(src, "a condition, or a template such as \"{{ is_state('x.y', 'on') }}\"")
            return None
        w.mark(dst, src)
        w.mark((*dst, "kind"), src)
        w.mark((*dst, "value"), src)
        return {"kind": "expression", "value": item}
    if not isinstance(item, dict):
        w.expect(src, "a mapping (one condition) or a template")
        return None
    if not w.enabled(src):
        return None
    tables = _tables()
    if "condition" in item:
        name, key = item["condition"], "condition"
    else:
        shorthand = [key for key in ("and", "or", "not") if key in item]
        if not shorthand:
            w.refuse(src, "missing 'condition': which condition (state, template, and...)")
            return None
        name = key = shorthand[0]
    kind = tables.CONDITIONS.get(name) if isinstance(name, str) else None
    if kind is None:
        known = ", ".join(sorted(tables.CONDITIONS))
        w.refuse((*src, key), f"unknown condition {name!r}: expected one of {known}", at_key=False)
        return None
    if key != "condition":  # `and: [...]`: the list under the key is the conditions
        kind = Kind(kind.native, {key: nested_conditions("conditions")})
    common = {**tables.CONDITION_COMMON, "condition": _skip}
    return _translate(w, kind, src, dst, f"{name} condition", key, common)


def actions(w: Writer, src: Path, dst: Path) -> list[Native]:
    """The native actions of the HA action list (or single action) at ``src``."""
    out: list[Native] = []
    for item in w.items(src):
        native = action(w, item, (*dst, len(out)))
        if native is not None:
            out.append(native)
    return out


def action(w: Writer, src: Path, dst: Path) -> Native | None:
    """The native action for the HA action at ``src``; ``None`` if left out or refused.

    The action's kind is the first key of the item that names one, in the tables' order
    (``action``/``service`` for a call, ``delay``, ``choose``...), as HA decides it.
    """
    item = w.get(src)
    if not isinstance(item, dict):
        w.expect(src, "a mapping (one action, such as {action: light.turn_on, ...})")
        return None
    if not w.enabled(src):
        return None
    tables = _tables()
    key = next((key for key in tables.ACTIONS if key in item), None)
    if key is None:
        known = ", ".join(tables.ACTIONS)
        w.refuse(src, f"unknown action: expected a mapping with one of {known}")
        return None
    return _translate(w, tables.ACTIONS[key], src, dst, f"{key} action", key, tables.ACTION_COMMON)


def _translate(
    w: Writer, kind: Kind, src: Path, dst: Path, label: str, key: str, common: dict[str, Handler]
) -> Native | None:
    w.mark(dst, src)
    out = translate(w, kind, src, dst, common)
    if out is None:
        w.not_yet((*src, key), label, kind.hint)
    return out


def _skip(w: Writer, src: Path, dst: Path, out: Native) -> None:
    """The field that named the kind: already read."""


def nested_conditions(name: str) -> Handler:
    """A field holding HA conditions: translated under ``name``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        w.mark((*dst, name), src)
        out[name] = conditions(w, src, (*dst, name))

    return handle


def nested_actions(name: str) -> Handler:
    """A field holding HA actions (a sequence): translated under ``name``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        w.mark((*dst, name), src)
        out[name] = actions(w, src, (*dst, name))

    return handle
