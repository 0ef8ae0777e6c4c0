"""Hypothesis strategies for every contract, shipped for tests in any package.

Needs `hypothesis` (in the workspace's dev group, not a runtime dependency). Strategies are
derived from the models' fields and constraints, so a field added to a contract is generated
without touching this module; a field type it cannot generate raises `TypeError` at once.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, JsonValue
from pydantic.fields import FieldInfo

from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.primitives import ID_PATTERN
from ruby_schemas.registry import REGISTRY, Registry

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound=Payload)

_ID = re.compile(ID_PATTERN)
_OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=9, minutes=30))]


def aware_datetimes() -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes between 1970 and 2200, in UTC and two other fixed offsets."""
    return st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(_OFFSETS),
    )


def json_values() -> st.SearchStrategy[JsonValue]:
    """Any JSON value: null, booleans, 64-bit integers, finite floats, text, arrays, objects."""
    scalars: st.SearchStrategy[JsonValue] = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def message_ids(max_size: int = 12) -> st.SearchStrategy[str]:
    """Valid ids (`Id`, `MessageId`): printable text, non-ASCII included, 1 to `max_size` long."""
    # Leaving out these categories leaves out every character ID_PATTERN refuses.
    printable = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Cn", "Zl", "Zp", "Zs"))
    return st.text(printable, min_size=1, max_size=max_size).filter(_ID.fullmatch)


def models(model_class: type[M]) -> st.SearchStrategy[M]:
    """Valid instances of `model_class`, with every field (optional ones too) generated."""
    fields = {
        name: _strategy(info.annotation, info.metadata)
        for name, info in model_class.model_fields.items()
    }
    return st.builds(model_class, **fields)


def envelopes(payload_class: type[P]) -> st.SearchStrategy[Envelope[P]]:
    """Valid envelopes around generated `payload_class` payloads, ids given or defaulted."""
    ids = message_ids()
    return st.builds(
        make_envelope,
        models(payload_class),
        source=st.text(min_size=1, max_size=12),
        correlation_id=st.none() | ids,
        causation_id=st.none() | ids,
        time=aware_datetimes(),
        message_id=st.none() | ids,
    )


def any_envelope(registry: Registry = REGISTRY) -> st.SearchStrategy[Envelope[Payload]]:
    """Envelopes of every type in `registry`."""
    return st.sampled_from(list(registry.values())).flatmap(envelopes)


def _strategy(annotation: Any, metadata: Iterable[Any] = ()) -> st.SearchStrategy[Any]:
    constraints = _constraints(metadata)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _strategy(args[0], [*metadata, *args[1:]])
    if annotation is JsonValue:
        return json_values()
    if origin in (Union, types.UnionType):
        return st.one_of([_strategy(arg, metadata) for arg in args])
    if annotation is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        size = constraints.get("min_length", 0)
        items = st.lists(_strategy(args[0]), min_size=size, max_size=size + 3)
        return items.map(tuple) if origin is tuple else items
    if origin is dict:
        return st.dictionaries(_strategy(args[0]), _strategy(args[1]), max_size=3)
    if isinstance(annotation, type):
        return _scalar(annotation, constraints)
    raise TypeError(f"no strategy for {annotation!r}")


def _scalar(annotation: type, constraints: dict[str, Any]) -> st.SearchStrategy[Any]:
    if issubclass(annotation, BaseModel):
        return models(annotation)
    if issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if annotation is AwareDatetime or annotation is datetime:
        return aware_datetimes()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low = constraints.get("ge", constraints.get("gt", -(2**31) - 1) + 1)
        high = constraints.get("le", constraints.get("lt", 2**31 + 1) - 1)
        return st.integers(min_value=low, max_value=high)
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if annotation is bytes:
        return st.binary(max_size=32)
    if annotation is str:
        if constraints.get("pattern") == ID_PATTERN:
            return message_ids(min(16, constraints.get("max_length", 16)))
        if "pattern" in constraints:
            found = st.from_regex(constraints["pattern"], fullmatch=True)
            most = constraints.get("max_length")
            return found if most is None else found.filter(lambda text: len(text) <= most)
        return st.text(min_size=constraints.get("min_length", 0), max_size=16)
    raise TypeError(f"no strategy for {annotation!r}")


def _constraints(metadata: Iterable[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update(_constraints(item.metadata))
        for name in ("pattern", "min_length", "max_length", "ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    return found
