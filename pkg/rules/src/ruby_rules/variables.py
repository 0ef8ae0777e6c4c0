"""A run's variables: the names templates read besides ``trigger`` (HA's script variables).

Where they come from: the rule's ``variables`` (rendered when a trigger fires, before the
conditions), a ``variables`` action, ``repeat`` inside a repeat's iteration, ``wait`` after a
``wait_for``. Values are JSON, so a paused run stores them in its timer record and a run
resumed in another process sees the same ones.

Scopes follow Home Assistant's current rule (its ``ScriptRunVariables``, 2025.4 on): each
sequence (the rule's actions, a branch of ``if``/``choose``, an iteration, a ``sequence``, a
``parallel`` branch) has a scope, where only the engine defines names of its own (``repeat``,
in each iteration); setting a name (a ``variables`` action, ``wait``) updates it in the
innermost scope that has it, else defines it in the run's top scope, visible from then on to
every step of the run (`assign`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Annotated, Final, TypeAlias

from pydantic import AfterValidator, JsonValue

from ruby_rules.context import Context, TriggerData
from ruby_rules.templates import TemplatedValue, compile_value

_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
RESERVED: Final = frozenset({"trigger", "repeat", "wait", "this"})
"""Names the engine sets itself (or, ``this``, that Ruby Core has not): a rule cannot."""


def _names(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    for name in value:
        if _NAME.fullmatch(name) is None:
            raise ValueError(
                f"invalid variable name {name[:70]!r}: expected a letter, then letters, digits "
                "or '_' (at most 64 characters), as a template reads it"
            )
        if name in RESERVED:
            raise ValueError(f"'{name}' is a variable the engine sets; choose another name")
    return value


Variables: TypeAlias = Annotated[dict[str, TemplatedValue], AfterValidator(_names)]
"""Names and values as a rule writes them; values may hold templates, checked at load."""

Scope: TypeAlias = dict[str, JsonValue]
"""One sequence's variables."""


def render_variables(values: Mapping[str, JsonValue], ctx: Context) -> Scope:
    """``values`` rendered in order, each template seeing the ones before it (as in HA);
    `ruby_rules.expressions.ExpressionError` if one fails."""
    rendered: Scope = {}
    for name, value in values.items():
        seen = Context(ctx.states, ctx.now, ctx.trigger, {**ctx.variables, **rendered})
        rendered[name] = compile_value(value).render(seen)
    return rendered


def assign(scopes: Sequence[MutableMapping[str, JsonValue]], name: str, value: JsonValue) -> None:
    """Set ``name`` where it is defined (innermost first), else in the top scope."""
    for scope in reversed(scopes):
        if name in scope:
            scope[name] = value
            return
    scopes[0][name] = value


def merged(scopes: Sequence[Mapping[str, JsonValue]]) -> Scope:
    """The variables visible in the innermost scope: inner names hide outer ones."""
    visible: Scope = {}
    for scope in scopes:
        visible.update(scope)
    return visible


def trigger_json(trigger: TriggerData) -> dict[str, JsonValue]:
    """A trigger as a variable holds it (``wait.trigger``): HA's trigger fields, as JSON."""

    def state(which: str) -> JsonValue:
        found = getattr(trigger, which)
        if found is None:
            return None
        return {"entity_id": trigger.entity_id, **found.model_dump(mode="json")}

    webhook = trigger.webhook_fields()  # a call, not a bus event
    return {
        "platform": trigger.kind,
        "kind": trigger.kind,
        "id": trigger.id,
        "entity_id": trigger.entity_id,
        "from_state": state("from_state"),
        "to_state": state("to_state"),
        "event": None
        if trigger.event_type is None or webhook
        else {"event_type": trigger.event_type, "data": dict(trigger.event_data)},
        "time": trigger.time.isoformat(),
        **webhook,
    }


def wait_value(
    deadline: datetime, until_time: bool, waited: TriggerData | None, now: datetime
) -> JsonValue:
    """The ``wait`` variable after a ``wait_for`` or ``wait_template`` paused until
    ``deadline``: ``trigger``, the trigger that ended it (None on a timeout), ``completed``
    (whether it ended before its timeout: what HA gives after a ``wait_template``) and
    ``remaining``, the seconds of the timeout left (0 on a timeout; None when ``until_time``:
    the deadline was a time trigger's)."""
    remaining = None if until_time else max(0.0, (deadline - now).total_seconds())
    return {
        "trigger": None if waited is None else trigger_json(waited),
        "completed": waited is not None,
        "remaining": 0.0 if waited is None else remaining,
    }
