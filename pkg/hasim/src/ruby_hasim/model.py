"""Home Assistant's core objects as the simulator keeps them: contexts, states and events."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TypeAlias

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
"""A value that JSON can carry."""
JsonObject: TypeAlias = dict[str, JsonValue]
"""A JSON object."""

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # pragma: allowlist secret (an alphabet)


def ulid() -> str:
    """A new ULID: 26 Crockford base32 characters, time-ordered, as Home Assistant's context ids."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Context:
    """Who or what caused a change: the `context` of states and events."""

    id: str = field(default_factory=ulid)
    parent_id: str | None = None
    user_id: str | None = None

    def as_dict(self) -> JsonObject:
        """The context as Home Assistant serialises it."""
        return {"id": self.id, "parent_id": self.parent_id, "user_id": self.user_id}


@dataclass(frozen=True, slots=True)
class State:
    """One entity's state object, immutable: a change makes a new one."""

    entity_id: str
    state: str
    attributes: JsonObject
    last_changed: datetime
    last_updated: datetime
    last_reported: datetime
    context: Context

    @property
    def domain(self) -> str:
        """The entity's domain, such as `light`."""
        return self.entity_id.split(".", 1)[0]

    def as_dict(self) -> JsonObject:
        """The state object as `get_states` and `state_changed` events carry it."""
        return {
            "entity_id": self.entity_id,
            "state": self.state,
            "attributes": dict(self.attributes),
            "last_changed": self.last_changed.isoformat(),
            "last_reported": self.last_reported.isoformat(),
            "last_updated": self.last_updated.isoformat(),
            "context": self.context.as_dict(),
        }


@dataclass(frozen=True)
class Event:
    """A bus event; its JSON is made once and shared by every subscription."""

    event_type: str
    data: JsonObject
    context: Context
    time_fired: datetime = field(default_factory=utcnow)
    origin: str = "LOCAL"

    def as_dict(self) -> JsonObject:
        """The event as `subscribe_events` delivers it."""
        return {
            "event_type": self.event_type,
            "data": self.data,
            "origin": self.origin,
            "time_fired": self.time_fired.isoformat(),
            "context": self.context.as_dict(),
        }

    @cached_property
    def encoded(self) -> str:
        """The event serialised once, for every subscriber."""
        return json.dumps(self.as_dict(), separators=(",", ":"))
