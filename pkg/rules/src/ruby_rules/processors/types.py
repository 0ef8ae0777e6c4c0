"""Field types shared by processor configs: entity ids, durations, times of day, state values.

Each type refuses bad input with a message that says what was expected, because that message
ends up, located by file, line and column, in front of the person who wrote the rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import time, timedelta
from typing import Annotated, Any, Final, TypeAlias, TypeGuard

from pydantic import AfterValidator, BeforeValidator, Field

from ruby_rules.templates import check_value, has_template
from ruby_schemas.primitives import ENTITY_ID_PATTERN, IDENTIFIER_PATTERN, SLUG_PATTERN

_ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
_TOKEN = re.compile(IDENTIFIER_PATTERN)
_SLUG = re.compile(SLUG_PATTERN)
_UNITS = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_HMS = re.compile(r"(\d+):([0-5]\d):([0-5]\d)")
_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?")

DURATION_HINT = "a duration such as '30s', '5m', '1h', '1h30m', 'HH:MM:SS' or a number of seconds"

MAX_DURATION: Final = timedelta(days=366)
"""The longest duration a rule may give (``for``, ``delay``, ``timeout``, ``max_lateness``).

A year is longer than any home automation waits, and keeps every deadline the engine computes
(now + duration) far from the datetime range's end, where ``99999999999h`` used to raise
`OverflowError` inside the engine."""
_MAX_SECONDS: Final = MAX_DURATION.total_seconds()
MAX_ID_LENGTH: Final = 64
"""Characters in a rule id, trigger id, event type, area or device id.

Ids end up in subjects (``<p>.evt.engine.rule.<id>.loaded``), KV keys (``engine.trace.<id>``)
and headers (``Nats-Msg-Id: fired-<id>-...``): nats-server drops a connection whose control line
passes 4 KiB, so a 5,000-character id used to reset the engine's connection. 64 is Home
Assistant's own limit for an event type, twice a device id, and ample for a name a person types.
"""
MAX_ENTITY_ID_LENGTH: Final = 255
"""Characters in an entity id: Home Assistant's own limit (it stores no longer ones)."""
MAX_NUMBER: Final = 1e15
"""Bounds (``above``/``below``) stay within ±10^15: beyond that a float no longer holds every
whole number, and no sensor reads so much."""
MAX_RUNS: Final = 1000
"""The largest ``max`` (runs waiting or running at once): in-flight work stays bounded."""


def _shown(value: str) -> str:
    # A hostile value (5,000 characters) is quoted shortened in the message that refuses it.
    return repr(value) if len(value) <= 60 else f"{value[:57]!r}... ({len(value)} characters)"


def _entity_id(value: str) -> str:
    if len(value) > MAX_ENTITY_ID_LENGTH:
        raise ValueError(
            f"invalid entity id {_shown(value)}: at most {MAX_ENTITY_ID_LENGTH} characters"
        )
    if _ENTITY_ID.fullmatch(value) is None:
        raise ValueError(
            f"invalid entity id {_shown(value)}: expected 'domain.object_id' in lower-case "
            "letters, digits and single underscores (such as 'light.hallway')"
        )
    return value


def is_entity_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid entity id, ``domain.object_id``."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_ENTITY_ID_LENGTH
        and _ENTITY_ID.fullmatch(value) is not None
    )


def _entity_id_or_expression(value: str) -> str:
    if has_template(value):
        check_value(value)
        return value
    return _entity_id(value)


def token(value: str) -> str:
    """``value`` if it is a valid id (`Token`); `ValueError` saying why not otherwise."""
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"invalid id {_shown(value)}: at most {MAX_ID_LENGTH} characters")
    if _TOKEN.fullmatch(value) is None:
        raise ValueError(f"invalid id {_shown(value)}: expected letters, digits, '_' or '-' only")
    return value


def is_token(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid id (`Token`): safe as one subject token and in a header."""
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH and bool(_TOKEN.fullmatch(value))


def _service(value: str) -> str:
    domain, dot, service = value.partition(".")
    if len(value) > 2 * MAX_ID_LENGTH + 1:
        raise ValueError(
            f"invalid service {_shown(value)}: at most {2 * MAX_ID_LENGTH + 1} characters"
        )
    if not dot or _SLUG.fullmatch(domain) is None or _SLUG.fullmatch(service) is None:
        raise ValueError(
            f"invalid service {_shown(value)}: expected 'domain.service', such as 'light.turn_on'"
        )
    return value


def one_or_many(value: Any) -> Any:
    """Accept a single value where a list is expected: ``x`` becomes ``[x]``."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [value]
    return value


def _state_value(value: Any) -> Any:
    # A state is text in Home Assistant; `to: 21` means the state "21". A bool is refused:
    # the loader already reads `on`/`off` as text, so a bool here was written `true`/`false`.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def parse_duration(value: Any) -> timedelta:
    """Parse ``30s``, ``5m``, ``1h``, ``1h30m``, ``HH:MM:SS`` or seconds (a number >= 0).

    Raise ``ValueError`` otherwise. Seconds are also how configs serialise a duration, so a
    dumped rule validates back to the same rule.
    """
    shown = _shown(value) if isinstance(value, str) else repr(value)
    shown = shown if len(shown) <= 80 else "a number that large"
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError(f"invalid duration {shown}: expected {DURATION_HINT}")
    if seconds > _MAX_SECONDS:
        raise ValueError(
            f"duration {shown} out of range: at most {MAX_DURATION.days} days "
            f"({int(MAX_DURATION.total_seconds())} seconds)"
        )
    return timedelta(seconds=seconds)


def _seconds(value: Any) -> float | None:
    # Plain arithmetic on bounded digits (at most 12 per unit): no input reaches timedelta's
    # OverflowError; the caller checks `MAX_DURATION` before building the timedelta.
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < math.inf:  # refuses NaN, infinities and negatives
            return None
        return float(value) if value <= _MAX_SECONDS else math.inf
    if isinstance(value, str) and value:
        units = _UNITS.fullmatch(value) or _HMS.fullmatch(value)
        if units is not None and any(units.groups()):
            if any(len(part or "") > 12 for part in units.groups()):
                return math.inf  # out of range, without converting thousands of digits
            hours, minutes, seconds = (int(part or 0) for part in units.groups())
            return float(hours * 3600 + minutes * 60 + seconds)
    return None


def parse_offset(value: Any) -> timedelta:
    """Parse a signed duration: ``-01:00:00``, ``+30m``, ``-90`` (seconds), or any unsigned
    form `parse_duration` reads; raise ``ValueError`` otherwise."""
    if isinstance(value, timedelta):
        return value
    sign = 1
    if isinstance(value, str) and value[:1] in ("-", "+"):
        sign, value = (-1 if value[0] == "-" else 1), value[1:]
    elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        sign, value = -1, -value
    return sign * parse_duration(value)


def parse_time_of_day(value: Any) -> time:
    """Parse ``HH:MM`` or ``HH:MM:SS`` (24 h clock); raise ``ValueError`` otherwise."""
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        clock = _CLOCK.fullmatch(value)
        if clock is not None and int(clock.group(1)) < 24:
            return time(int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0))
    raise ValueError(f"invalid time of day {value!r}: expected 'HH:MM' or 'HH:MM:SS' (00:00-23:59)")


EntityId: TypeAlias = Annotated[str, AfterValidator(_entity_id)]
"""One Home Assistant entity id, ``domain.object_id``; both parts are safe subject tokens."""

EntityIds: TypeAlias = Annotated[
    tuple[EntityId, ...], BeforeValidator(one_or_many), Field(min_length=1)
]
"""One entity id or a non-empty list of them."""

TemplatedEntityIds: TypeAlias = Annotated[
    tuple[Annotated[str, AfterValidator(_entity_id_or_expression)], ...],
    BeforeValidator(one_or_many),
    Field(min_length=1),
]
"""Like `EntityIds`, but an item may also be an expression such as ``"{{ trigger.entity_id }}"``,
which must give an entity id (or a list of them) when rendered."""

Token: TypeAlias = Annotated[str, AfterValidator(token)]
"""An identifier that is one safe subject token: letters, digits, ``_``, ``-``."""


def _token_or_template(value: str) -> str:
    if has_template(value):
        check_value(value)
        return value
    return token(value)


TemplatedTokens: TypeAlias = Annotated[
    tuple[Annotated[str, AfterValidator(_token_or_template)], ...],
    BeforeValidator(one_or_many),
    Field(min_length=1),
]
"""One `Token` or a list; an item may also be a template giving one or a list of them."""

ServiceName: TypeAlias = Annotated[str, AfterValidator(_service)]
"""A Home Assistant service, ``domain.service``."""


def _service_or_template(value: str) -> str:
    if has_template(value):
        check_value(value)
        return value
    return _service(value)


def service_name(value: object) -> str:
    """``value`` if it is a service, ``domain.service``; else `ValueError` saying so."""
    if not isinstance(value, str):
        raise ValueError(f"expected a service such as 'light.turn_on'; got {_kind(value)}")  # noqa: TRY004 - a rendered value, reported like a template's failure
    return _service(value)


TemplatedServiceName: TypeAlias = Annotated[str, AfterValidator(_service_or_template)]
"""`ServiceName`, or a template giving one when the step runs (HA's ``action: "{{ ... }}"``)."""


def _template_only(value: str) -> str:
    if not has_template(value):
        raise ValueError(f"expected a mapping, or a template giving one; got text {_shown(value)}")
    check_value(value)
    return value


TemplateText: TypeAlias = Annotated[str, AfterValidator(_template_only)]
"""A text that is a template (checked at load), where a structure is rendered from it."""

StateValue: TypeAlias = Annotated[str, BeforeValidator(_state_value)]
"""An entity state as text; a number is read as its text."""

StateValues: TypeAlias = Annotated[
    tuple[StateValue, ...], BeforeValidator(one_or_many), Field(min_length=1)
]
"""One state or a non-empty list of states (any of them matches)."""

Duration: TypeAlias = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration written ``30s``, ``5m``, ``1h``, ``1h30m`` or ``HH:MM:SS``."""

Offset: TypeAlias = Annotated[timedelta, BeforeValidator(parse_offset)]
"""A signed duration: ``-01:00:00`` (earlier), ``+00:30:00`` or ``30m`` (later)."""

TimeOfDay: TypeAlias = Annotated[time, BeforeValidator(parse_time_of_day)]
"""A wall-clock time written ``HH:MM`` or ``HH:MM:SS``."""


def number(value: Any) -> Any:
    """A finite number within ±`MAX_NUMBER` as a float; `ValueError` for anything else."""
    # Strict: `true` is not 1 and "5" is not 5; out-of-range numbers are refused by name.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number; got {_kind(value)}")  # noqa: TRY004 - pydantic reports only ValueError
    if not -MAX_NUMBER <= value <= MAX_NUMBER:  # also refuses NaN and infinities
        raise ValueError(
            f"number out of range: expected one from {-MAX_NUMBER:g} to {MAX_NUMBER:g}"
        )
    return float(value)


def _count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number; got {_kind(value)}")  # noqa: TRY004 - pydantic reports only ValueError
    if not 1 <= value <= MAX_RUNS:
        shown = value if abs(value) < 10**12 else "a number that large"
        raise ValueError(f"{shown} out of range: expected a whole number from 1 to {MAX_RUNS}")
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false; got {_kind(value)}")  # noqa: TRY004 - pydantic reports only ValueError
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "text" if isinstance(value, str) else "nothing" if value is None else "a structure"


Number: TypeAlias = Annotated[float, BeforeValidator(number)]
"""A finite number within ±`MAX_NUMBER`; ``true``/``false`` and text are refused, not read as 1."""

Count: TypeAlias = Annotated[int, BeforeValidator(_count)]
"""A whole number from 1 to `MAX_RUNS`; ``true`` is refused, not read as 1."""

Flag: TypeAlias = Annotated[bool, BeforeValidator(_flag)]
"""``true`` or ``false`` only: ``1``, ``0`` and ``"yes"`` are refused."""


def in_any(value: str | None, allowed: Sequence[str] | None) -> bool:
    """True when ``allowed`` is ``None`` (anything) or contains ``value``."""
    return allowed is None or (value is not None and value in allowed)
