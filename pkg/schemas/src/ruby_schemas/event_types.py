"""What the engine asks the gateway to forward: the Home Assistant bus event types rules need.

Not a stream message: the engine keeps it, in an envelope, as one record of the status bucket
(key ``engine.event_types``); the gateway reads it at start and follows every put (ADR-0030).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator

from ruby_schemas.base import Payload
from ruby_schemas.primitives import NonEmptyStr


def _sorted_once(types: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(types)))


class HaEventTypesV1(Payload):
    """The Home Assistant event types the engine's loaded rules listen to."""

    TYPE: ClassVar[str] = "engine.ha_event_types.v1"

    event_types: Annotated[tuple[NonEmptyStr, ...], AfterValidator(_sorted_once)]
    """Every event type an `event` trigger names (a rule's own triggers and its `wait_for`
    triggers), sorted, each once; empty when no rule listens to a bus event. `state_changed`
    is never forwarded this way: state changes have their own subjects."""
