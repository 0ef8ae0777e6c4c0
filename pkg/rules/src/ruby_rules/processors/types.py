"""Field types shared by processor configs: entity ids, durations, times of day, state values.

Each type refuses bad input with a message that says what was expected, because that message
ends up, located by file, line and column, in front of the person who wrote the rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time, timedelta
from typing import Annotated, Any, TypeAlias, TypeGuard

from pydantic import AfterValidator, BeforeValidator, Field

from ruby_rules.templates import check_value
from ruby_schemas.primitives import ENTITY_ID_PATTERN, IDENTIFIER_PATTERN, SLUG_PATTERN

_ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
_TOKEN = re.compile(IDENTIFIER_PATTERN)
_SLUG = re.compile(SLUG_PATTERN)
_UNITS = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?")

DURATION_HINT = "a duration such as '30s', '5m', '1h', '1h30m', 'HH:MM:SS' or a number of seconds"


def _entity_id(value: str) -> str:
    if _ENTITY_ID.fullmatch(value) is None:
        raise ValueError(
            f"invalid entity id {value!r}: expected 'domain.object_id' in lower-case letters, "
            "digits and single underscores (such as 'light.hallway')"
        )
    return value


def is_entity_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid entity id, ``domain.object_id``."""
    return isinstance(value, str) and _ENTITY_ID.fullmatch(value) is not None


def _entity_id_or_expression(value: str) -> str:
    if "{{" in value:
        check_value(value)
        return value
    return _entity_id(value)


def _token(value: str) -> str:
    if _TOKEN.fullmatch(value) is None:
        raise ValueError(f"invalid id {value!r}: expected letters, digits, '_' or '-' only")
    return value


def _service(value: str) -> str:
    domain, dot, service = value.partition(".")
    if not dot or _SLUG.fullmatch(domain) is None or _SLUG.fullmatch(service) is None:
        raise ValueError(
            f"invalid service {value!r}: expected 'domain.service', such as 'light.turn_on'"
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
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 10**9:
        return timedelta(seconds=value)
    if isinstance(value, str) and value:
        units = _UNITS.fullmatch(value)
        if units is not None and any(units.groups()):
            hours, minutes, seconds = (int(part or 0) for part in units.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
        clock = re.fullmatch(r"(\d+):([0-5]\d):([0-5]\d)", value)
        if clock is not None:
            hours, minutes, seconds = (int(part) for part in clock.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"invalid duration {value!r}: expected {DURATION_HINT}")


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

Token: TypeAlias = Annotated[str, AfterValidator(_token)]
"""An identifier that is one safe subject token: letters, digits, ``_``, ``-``."""

ServiceName: TypeAlias = Annotated[str, AfterValidator(_service)]
"""A Home Assistant service, ``domain.service``."""

StateValue: TypeAlias = Annotated[str, BeforeValidator(_state_value)]
"""An entity state as text; a number is read as its text."""

StateValues: TypeAlias = Annotated[
    tuple[StateValue, ...], BeforeValidator(one_or_many), Field(min_length=1)
]
"""One state or a non-empty list of states (any of them matches)."""

Duration: TypeAlias = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration written ``30s``, ``5m``, ``1h``, ``1h30m`` or ``HH:MM:SS``."""

TimeOfDay: TypeAlias = Annotated[time, BeforeValidator(parse_time_of_day)]
"""A wall-clock time written ``HH:MM`` or ``HH:MM:SS``."""


def in_any(value: str | None, allowed: Sequence[str] | None) -> bool:
    """True when ``allowed`` is ``None`` (anything) or contains ``value``."""
    return allowed is None or (value is not None and value in allowed)
