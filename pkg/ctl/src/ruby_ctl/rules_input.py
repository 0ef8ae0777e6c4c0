"""The input files of ``rubyctl rules test``: an events file (JSON lines) and initial states.

Read whole before anything runs: a bad line is an `InputError` naming the file and line, so a
test never half-runs on a broken file. Strict about our own formats (unknown keys refused),
lenient where a hand-written file is: a naive time is in the simulation's zone, a number is
accepted as a state, blank lines and ``#`` comment lines are skipped.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ruby_ctl.rules_sim import BusEvent, SetState, SimEvent, from_envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.ha_events import EntityState
from ruby_schemas.primitives import EntityId, JsonObject, NonEmptyStr
from ruby_schemas.registry import decode


class InputError(ValueError):
    """An events or states file cannot be used; the message names the file and line."""


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    time: datetime


class _StateLine(_Line):
    entity_id: EntityId
    state: str | None
    attributes: JsonObject = Field(default_factory=dict)


class _EventLine(_Line):
    event_type: NonEmptyStr
    data: JsonObject = Field(default_factory=dict)


class _InitialState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    state: str
    attributes: JsonObject = Field(default_factory=dict)
    last_changed: datetime | None = None


_STATES = TypeAdapter(dict[EntityId, _InitialState | str])
_SHAPES = (
    "expected a state change {time, entity_id, state[, attributes]}, "
    "an event {time, event_type[, data]} or an envelope from EVENTS"
)


def aware(when: datetime, tz: tzinfo | None) -> datetime:
    """``when`` as an aware time: a naive one is read in ``tz`` (default: the local zone)."""
    if when.tzinfo is not None:
        return when
    return when.replace(tzinfo=tz) if tz is not None else when.astimezone()


def read_events(path: Path, tz: tzinfo | None) -> tuple[list[SimEvent], int]:
    """Every event of ``path``, in order, and how many envelopes were skipped (not HA events).

    Raises `InputError` for an unreadable file, a bad line, or a time before the previous one.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the events file: {exc}") from None
    events: list[SimEvent] = []
    skipped = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path}:{number}"
        event = _event(text, f"{path.name}:{number}", where, tz)
        if event is None:
            skipped += 1
            continue
        if events and event.time < events[-1].time:
            raise InputError(
                f"{where}: time {event.time.isoformat()} is before the previous event's "
                f"{events[-1].time.isoformat()}: events must be in time order"
            )
        events.append(event)
    return events, skipped


def _event(text: str, event_id: str, where: str, tz: tzinfo | None) -> SimEvent | None:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{where}: {_SHAPES}; got {type(raw).__name__}")
    if "specversion" in raw:
        try:
            return from_envelope(decode(text))
        except ContractError as exc:
            raise InputError(f"{where}: not a valid envelope: {exc}") from None
    try:
        if "event_type" in raw:
            bus = _EventLine.model_validate(raw)
            when = aware(bus.time, tz)
            return BusEvent(when, event_id, bus.event_type, bus.data, when)
        if "entity_id" in raw:
            change = _StateLine.model_validate(raw)
            when = aware(change.time, tz)
            return SetState(when, event_id, change.entity_id, change.state, change.attributes)
    except ValidationError as exc:
        raise InputError(f"{where}: {_explain(exc)}") from None
    raise InputError(f"{where}: {_SHAPES}")


def read_states(path: Path, at: datetime) -> dict[str, EntityState]:
    """Initial states from ``{entity_id: {"state", "attributes"?, "last_changed"?}}`` (or
    ``{entity_id: "on"}``); a state without ``last_changed`` has held since ``at``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the states file: {exc.strerror}") from None
    try:
        parsed = _STATES.validate_json(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: {_explain(exc)}") from None
    states: dict[str, EntityState] = {}
    for entity_id, given in parsed.items():
        initial = _InitialState(state=given) if isinstance(given, str) else given
        since = at if initial.last_changed is None else aware(initial.last_changed, at.tzinfo)
        states[entity_id] = EntityState(
            state=initial.state,
            attributes=initial.attributes,
            last_changed=since,
            last_updated=since,
        )
    return states


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            return f"not JSON: {error['msg']}"
        path = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
        problems.append(f"{path + ': ' if path else ''}{error['msg']}")
    return "; ".join(problems)


def _is_union_tag(part: int | str) -> bool:
    return part in ("_InitialState", "str")
