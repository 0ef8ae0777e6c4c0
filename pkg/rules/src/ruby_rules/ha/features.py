"""The one table of Home Assistant automation features: what each becomes, or "not yet".

`TRIGGERS` is keyed by trigger platform, `CONDITIONS` by condition name, `ACTIONS` by the key
that makes an action what it is (in the order HA looks for it). A `Kind` whose native kind is
``None`` is refused with ``<name> is not supported yet`` at its line. When a native kind
arrives (``sun``, ``repeat``...), supporting its HA form is its entry here: the native kind
and how its fields translate.
"""

from __future__ import annotations

from typing import Final

from ruby_rules.ha.calls import CALL, SCENE, condition_step
from ruby_rules.ha.kinds import (
    Handler,
    Kind,
    any_state,
    bound,
    copy,
    drop,
    duration,
    not_yet,
    not_yet_unless,
    offset,
    text_id,
)
from ruby_rules.ha.source import Native, Writer, is_template
from ruby_rules.ha.translate import nested_actions, nested_conditions, trigger
from ruby_rules.processors.types import is_entity_id
from ruby_rules.yamldoc import Path

# --- triggers ---------------------------------------------------------------------------------


def _state_changes_only(w: Writer, src: Path, dst: Path, out: Native) -> None:
    item = w.get(src)
    assert isinstance(item, dict)  # noqa: S101 - a trigger is a mapping by now
    if not {"from", "to", "not_from", "not_to", "attribute"} & set(item):
        w.not_yet(
            src,
            "a state trigger without 'from' or 'to'",
            "add 'to: ~' to fire on every change of the state itself",
            detail="in HA it also fires when only an attribute changes",
        )


def _time_at(w: Writer, src: Path, dst: Path, out: Native) -> None:
    items: list[object] = []
    w.mark((*dst, "at"), src)
    listed = isinstance(w.get(src), list)
    for item in w.items(src):
        at = (*dst, "at", len(items)) if listed else (*dst, "at")
        value = w.get(item)
        if is_template(value):
            w.not_yet(item, "a time trigger at a template")
        elif isinstance(value, dict):
            native: Native = {}
            w.mark(at, item)
            for key in value:
                if key == "offset":
                    offset("offset")(w, (*item, key), at, native)
                else:
                    native[key] = w.copy((*item, key), (*at, key))
            items.append(native)
        else:
            items.append(w.copy(item, at))
    if items:
        out["at"] = items if listed else items[0]


def _event_type(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if isinstance(value, list) and len(value) > 1:
        w.not_yet(src, "an event trigger on several event types", "give one trigger per type")
    elif is_template(value):
        w.not_yet(src, "an event type from a template")
    elif isinstance(value, list) and value:
        out["event_type"] = w.copy((*src, 0), (*dst, "event_type"))
    else:
        out["event_type"] = w.copy(src, (*dst, "event_type"))


TRIGGER_COMMON: Final[dict[str, Handler]] = {
    "id": text_id("id"),
    "alias": drop,
    "enabled": drop,
    "variables": not_yet("trigger variables"),
}
"""Fields every trigger may have."""

_FOR = duration("for")

TRIGGERS: Final[dict[str, Kind]] = {
    "state": Kind(
        "state",
        {
            "from": any_state("from"),
            "to": any_state("to"),
            "for": _FOR,
            "not_from": not_yet("'not_from' in a state trigger"),
            "not_to": not_yet("'not_to' in a state trigger"),
        },
        finish=_state_changes_only,
    ),
    "numeric_state": Kind(
        "numeric_state",
        {
            "above": bound("above", "numeric_state trigger"),
            "below": bound("below", "numeric_state trigger"),
            "for": _FOR,
            "value_template": not_yet("'value_template' in a numeric_state trigger"),
        },
    ),
    "event": Kind(
        "event",
        {"event_type": _event_type, "context": not_yet("'context' in an event trigger")},
    ),
    "time": Kind("time", {"at": _time_at}),
    "time_pattern": Kind("time_pattern"),
    "sun": Kind("sun", {"offset": offset("offset")}),
    "template": Kind(None),
    "homeassistant": Kind(None),
    "zone": Kind("zone"),
    "geo_location": Kind(None),
    "webhook": Kind(None),
    "mqtt": Kind(None),
    "device": Kind(None),
    "tag": Kind(None),
    "calendar": Kind(None),
    "persistent_notification": Kind(None),
    "conversation": Kind(None),
}
"""HA trigger platforms (``trigger:``, or ``platform:`` in the older spelling)."""

# --- conditions -------------------------------------------------------------------------------


def _clock(name: str) -> Handler:
    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        value = w.get(src)
        if is_entity_id(value):
            w.not_yet(src, "a time condition bounded by an entity", detail=f"{name}: {value}")
        else:
            out[name] = w.copy(src, (*dst, name))

    return handle


CONDITION_COMMON: Final[dict[str, Handler]] = {"alias": drop, "enabled": drop}
"""Fields every condition may have."""

_LOGIC = {"conditions": nested_conditions("conditions")}

CONDITIONS: Final[dict[str, Kind]] = {
    "state": Kind(
        "state",
        {"for": _FOR, "match": not_yet_unless("all", "'match: any' in a state condition")},
    ),
    "numeric_state": Kind(
        "numeric_state",
        {
            "above": bound("above", "numeric_state condition"),
            "below": bound("below", "numeric_state condition"),
            "value_template": not_yet("'value_template' in a numeric_state condition"),
        },
    ),
    "time": Kind("time", {"after": _clock("after"), "before": _clock("before")}),
    "template": Kind("expression", {"value_template": copy("value")}),
    "and": Kind("and", _LOGIC),
    "or": Kind("or", _LOGIC),
    "not": Kind("not", _LOGIC),
    "trigger": Kind(None, hint="Ruby Core has no condition on the trigger's id yet"),
    "sun": Kind(
        "sun",
        {"before_offset": offset("before_offset"), "after_offset": offset("after_offset")},
    ),
    "zone": Kind("zone", {"event": drop}),  # HA ignores it (a 2016 leftover)
    "device": Kind(None),
}
"""HA conditions (``condition:``; ``and:``/``or:``/``not:`` and a bare template too)."""

# --- actions ----------------------------------------------------------------------------------


def _wait_trigger(w: Writer, src: Path, dst: Path, out: Native) -> None:
    found = [item for item in w.items(src) if _not_disabled(w.get(item))]
    if len(found) != 1:
        w.not_yet(src, "wait_for_trigger with several triggers", "wait for one trigger")
        return
    native = trigger(w, found[0], (*dst, "trigger"))
    if native is not None:
        out["trigger"] = native


def _not_disabled(item: object) -> bool:
    # Only a plain `enabled: false` leaves a trigger out; `trigger` refuses anything else.
    return not (isinstance(item, dict) and item.get("enabled") is False)


def _timeout_required(w: Writer, src: Path, dst: Path, out: Native) -> None:
    item = w.get(src)
    if isinstance(item, dict) and "timeout" not in item:
        w.not_yet(
            (*src, "wait_for_trigger"),
            "wait_for_trigger without a timeout",
            "Ruby Core bounds every wait; add 'timeout'",
        )


def _options(w: Writer, src: Path, dst: Path, out: Native) -> None:
    options: list[Native] = []
    w.mark((*dst, "options"), src)
    for item in w.items(src):
        at = (*dst, "options", len(options))
        value = w.get(item)
        if not isinstance(value, dict):
            w.expect(item, "a mapping (one option, with 'conditions' and 'sequence')")
            continue
        w.mark(at, item)
        option: Native = {}
        for key in value:
            if key == "conditions":
                nested_conditions("conditions")(w, (*item, key), at, option)
            elif key == "sequence":
                nested_actions("actions")(w, (*item, key), at, option)
            elif key != "alias":
                option[key] = w.copy((*item, key), (*at, key))
        options.append(option)
    out["options"] = options


ACTION_COMMON: Final[dict[str, Handler]] = {
    "alias": drop,
    "enabled": drop,
    "continue_on_error": not_yet_unless(False, "continue_on_error"),
}
"""Fields every action may have."""

ACTIONS: Final[dict[str, Kind]] = {
    "delay": Kind("delay", {"delay": duration("duration")}),
    "wait_template": Kind(None),
    "wait_for_trigger": Kind(
        "wait_for",
        {
            "wait_for_trigger": _wait_trigger,
            "timeout": duration("timeout"),
            "continue_on_timeout": copy("continue_on_timeout"),
        },
        finish=_timeout_required,
    ),
    "event": Kind(None, hint="Ruby Core's 'publish' does not reach Home Assistant's bus"),
    "condition": Kind("if", finish=condition_step),
    "choose": Kind("choose", {"choose": _options, "default": nested_actions("default")}),
    "if": Kind(
        "if",
        {
            "if": nested_conditions("conditions"),
            "then": nested_actions("then"),
            "else": nested_actions("else"),
        },
    ),
    "repeat": Kind(None),
    "parallel": Kind(None),
    "sequence": Kind(None),
    "stop": Kind(
        "stop",
        {
            "stop": copy("reason"),
            "response_variable": not_yet("'response_variable' in a stop action"),
        },
    ),
    "variables": Kind(None),
    "action": CALL,
    "service": CALL,
    "service_template": CALL,
    "scene": SCENE,
    "device_id": Kind(None),
    "set_conversation_response": Kind(None),
}
"""HA actions, by the key that makes an action what it is, in the order HA looks for it."""
