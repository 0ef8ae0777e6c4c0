"""The one table of Home Assistant automation features: what each becomes, or "not yet".

`TRIGGERS` is keyed by trigger platform, `CONDITIONS` by condition name, `ACTIONS` by the key
that makes an action what it is (in the order HA looks for it). A `Kind` whose native kind is
``None`` is refused with ``<name> is not supported yet`` at its line. When a native kind
arrives (``sun``, ``repeat``...), supporting its HA form is its entry here: the native kind
and how its fields translate.
"""

from __future__ import annotations

import re
from typing import Final

from ruby_rules.ha.calls import CALL, SCENE, condition_step
from ruby_rules.ha.kinds import (
    Handler,
    Kind,
    any_state,
    as_text,
    bound,
    copy,
    drop,
    duration,
    not_yet,
    offset,
    text_id,
)
from ruby_rules.ha.source import Native, Writer, is_template
from ruby_rules.ha.translate import nested_actions, nested_conditions, trigger
from ruby_rules.processors.truth import not_supported
from ruby_rules.processors.types import MAX_DURATION
from ruby_rules.yamldoc import Path

# --- triggers ---------------------------------------------------------------------------------


def _every_change(w: Writer, src: Path, dst: Path, out: Native) -> None:
    # HA: with only entity_id, the trigger fires on every change, attributes included.
    item = w.get(src)
    assert isinstance(item, dict)  # noqa: S101 - a trigger is a mapping by now
    if {"from", "to", "not_from", "not_to", "attribute"} & set(item):
        return
    if "for" in item:
        w.not_yet(
            (*src, "for"),
            "'for' in a state trigger without 'from' or 'to'",
            "add 'to: ~' to hold the state itself",
        )
        return
    out["attributes_too"] = True


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
    if any(is_template(w.get(item)) for item in w.items(src)):
        w.not_yet(src, "an event type from a template")
    elif isinstance(value, list) and len(value) == 1:  # one type stays text, as natively
        out["event_type"] = w.copy((*src, 0), (*dst, "event_type"))
    else:
        out["event_type"] = w.copy(src, (*dst, "event_type"))


def _allowed_methods(w: Writer, src: Path, dst: Path, out: Native) -> None:
    # HA upper-cases each method (`vol.Upper`); one method may stand alone.
    w.mark((*dst, "allowed_methods"), src)
    methods: list[object] = []
    for item in w.items(src):
        value = w.get(item)
        w.mark((*dst, "allowed_methods", len(methods)), item)
        methods.append(value.upper() if isinstance(value, str) else value)
    out["allowed_methods"] = methods


def _local_only(w: Writer, src: Path, dst: Path, out: Native) -> None:
    # Every call reaches the API through Traefik with a control token: never anonymous, from
    # wherever it comes (ADR-0037). Accepted, with no effect.
    if not isinstance(w.get(src), bool):
        w.expect(src, "true or false")


def _watched_template(what: str, *, trigger: bool = True) -> Handler:
    """A template rendered on state changes, copied as ``value_template``; what it uses that
    Ruby Core cannot honour yet (``now()``) is refused by name."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        value = w.get(src)
        refused = not_supported(value, what, trigger=trigger) if isinstance(value, str) else None
        if refused is None:
            out["value_template"] = w.copy(src, (*dst, "value_template"))
        else:
            w.not_yet(src, *refused)

    return handle


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
            "not_from": any_state("not_from"),
            "not_to": any_state("not_to"),
        },
        finish=_every_change,
    ),
    "numeric_state": Kind(
        "numeric_state",
        {
            "above": bound("above"),
            "below": bound("below"),
            "for": _FOR,
        },
    ),
    "event": Kind(
        "event",
        {
            "event_type": _event_type,
            "context": not_yet(
                "'context' in an event trigger",
                "the engine does not see an event's context (no user id reaches it)",
            ),
        },
    ),
    "time": Kind("time", {"at": _time_at}),
    "time_pattern": Kind("time_pattern"),
    "sun": Kind("sun", {"offset": offset("offset")}),
    "template": Kind(
        "template", {"value_template": _watched_template("a template trigger"), "for": _FOR}
    ),
    "homeassistant": Kind("homeassistant"),
    "zone": Kind("zone"),
    "geo_location": Kind(None),
    "webhook": Kind(
        "webhook",
        {
            "webhook_id": text_id("webhook_id"),
            "allowed_methods": _allowed_methods,
            "local_only": _local_only,
        },
    ),
    "mqtt": Kind(None),
    "device": Kind(None),
    "tag": Kind(None),
    "calendar": Kind(None),
    "persistent_notification": Kind(None),
    "conversation": Kind(None),
}
"""HA trigger platforms (``trigger:``, or ``platform:`` in the older spelling)."""

# --- conditions -------------------------------------------------------------------------------


_INPUT_ENTITY: Final = re.compile(r"input_(?:select|text|number|boolean|datetime)\.\w+")


def _states(w: Writer, src: Path, dst: Path, out: Native) -> None:
    # HA compares with the state of an input_* entity named here; natively it is plain text.
    named = [w.get(item) for item in w.items(src)]
    entities = [v for v in named if isinstance(v, str) and _INPUT_ENTITY.fullmatch(v)]
    if entities:
        w.not_yet(src, "a state condition on an input entity's state", detail=str(entities[0]))
    else:
        out["state"] = w.copy(src, (*dst, "state"))


def _trigger_ids(w: Writer, src: Path, dst: Path, out: Native) -> None:
    # HA reads ids as text: `id: 1` names the trigger whose id is "1".
    w.mark((*dst, "id"), src)
    ids: list[object] = []
    for item in w.items(src):
        w.mark((*dst, "id", len(ids)), item)
        ids.append(as_text(w.get(item)))
    out["id"] = ids


CONDITION_COMMON: Final[dict[str, Handler]] = {"alias": drop, "enabled": drop}
"""Fields every condition may have."""

_LOGIC = {"conditions": nested_conditions("conditions")}

CONDITIONS: Final[dict[str, Kind]] = {
    "state": Kind("state", {"for": _FOR, "state": _states}),
    "numeric_state": Kind(
        "numeric_state",
        {
            "above": bound("above"),
            "below": bound("below"),
        },
    ),
    "time": Kind("time"),
    "template": Kind("expression", {"value_template": copy("value")}),
    "and": Kind("and", _LOGIC),
    "or": Kind("or", _LOGIC),
    "not": Kind("not", _LOGIC),
    "trigger": Kind("trigger", {"id": _trigger_ids}),
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


def _timeout_at_most_the_longest(action: str) -> Handler:
    def finish(w: Writer, src: Path, dst: Path, out: Native) -> None:
        # HA waits without end when no timeout is given; Ruby Core bounds every wait, at the
        # longest duration it accepts (366 days): for a person, the same wait.
        item = w.get(src)
        if isinstance(item, dict) and "timeout" not in item:
            out["timeout"] = int(MAX_DURATION.total_seconds())

    return finish


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


def _repeat(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if not isinstance(value, dict):
        w.expect(src, "a mapping with 'sequence' and one of count, while, until, for_each")
        return
    for key in value:
        if key in ("while", "until"):
            nested_conditions(key)(w, (*src, key), dst, out)
        elif key == "sequence":
            nested_actions("actions")(w, (*src, key), dst, out)
        else:  # count, for_each; anything else the native repeat refuses, at its line
            out[key] = w.copy((*src, key), (*dst, key))


def _delay(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    templated = isinstance(value, dict) and any(is_template(v) for v in value.values())
    if is_template(value) or templated:  # rendered when the step runs
        out["duration"] = w.copy(src, (*dst, "duration"))
    else:
        duration("duration")(w, src, dst, out)


def _continue_on_error(w: Writer, src: Path, dst: Path, out: Native) -> None:
    # A run never waits for a call's outcome (the gateway executes it later): a failing call
    # never ends a run, with or without the flag, which is what `true` asks. Errors HA does
    # not continue on either (a template that fails) end the run in both.
    if not isinstance(w.get(src), bool):
        w.expect(src, "true or false")


def _event_data(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if is_template(value):
        w.not_yet(src, "event data from one template")
        return
    if not isinstance(value, dict):
        w.expect(src, "a mapping of event data")
        return
    data = out.setdefault("data", {})
    assert isinstance(data, dict)  # noqa: S101 - only this handler writes it
    w.values.setdefault((*dst, "data"), w.where(src))
    for key in value:  # event_data_template after event_data: the later one wins, as in HA
        data[key] = w.copy((*src, key), (*dst, "data", key))


ACTION_COMMON: Final[dict[str, Handler]] = {
    "alias": drop,
    "enabled": drop,
    "continue_on_error": _continue_on_error,
}
"""Fields every action may have."""

ACTIONS: Final[dict[str, Kind]] = {
    "delay": Kind("delay", {"delay": _delay}),
    "wait_template": Kind(
        "wait_template",
        {
            "wait_template": _watched_template("wait_template", trigger=False),
            "timeout": duration("timeout"),
            "continue_on_timeout": copy("continue_on_timeout"),
        },
        finish=_timeout_at_most_the_longest("wait_template"),
    ),
    "wait_for_trigger": Kind(
        "wait_for",
        {
            "wait_for_trigger": _wait_trigger,
            "timeout": duration("timeout"),
            "continue_on_timeout": copy("continue_on_timeout"),
        },
        finish=_timeout_at_most_the_longest("wait_for_trigger"),
    ),
    "event": Kind(
        "fire_event",
        {
            "event": copy("event_type"),
            "event_data": _event_data,
            "event_data_template": _event_data,
        },
    ),
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
    "repeat": Kind("repeat", {"repeat": _repeat}),
    "parallel": Kind("parallel", {"parallel": nested_actions("actions")}),
    "sequence": Kind("sequence", {"sequence": nested_actions("actions")}),
    "stop": Kind(
        "stop",
        {
            "stop": copy("reason"),
            "response_variable": not_yet("'response_variable' in a stop action"),
        },
    ),
    "variables": Kind("variables", {"variables": copy("variables")}),
    "action": CALL,
    "service": CALL,
    "service_template": CALL,
    "scene": SCENE,
    "device_id": Kind(None),
    "set_conversation_response": Kind(None),
}
"""HA actions, by the key that makes an action what it is, in the order HA looks for it."""
