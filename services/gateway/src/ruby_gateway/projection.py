"""The lean projection: entity -> state, selected attributes, last_changed, context id.

The in-memory map is the gateway's truth while it runs, updated only once JetStream stored the
change it reflects; the KV bucket is its durable copy, for restarts and for other readers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from nats.aio.client import Client
from pydantic import JsonValue

from ruby_natsx.kvread import read_bucket
from ruby_schemas.ha import HaState
from ruby_schemas.ha_events import EntityState

log = structlog.get_logger("ruby_gateway.projection")

SELECTED_ATTRIBUTES = (
    "friendly_name",
    "device_class",
    "unit_of_measurement",
    "brightness",
    "latitude",
    "longitude",
    "radius",
    "gps_accuracy",
    "next_rising",
    "next_setting",
)
"""The attributes worth keeping in the lean projection; the events carry all of them. Rules
read the location ones from the engine's view, which starts from the projection: the home's
(``zone.home``) and HA's own sun times (``sun.sun``) for ``sun``, a zone's and a person's for
``zone`` (ADR-0033)."""


@dataclass(frozen=True)
class Projected:
    state: str
    attributes: Mapping[str, JsonValue]
    last_changed: datetime
    last_updated: datetime
    context_id: str

    @classmethod
    def of(cls, ha: HaState) -> Projected:
        kept = {k: v for k, v in ha.attributes.items() if k in SELECTED_ATTRIBUTES}
        return cls(ha.state, kept, ha.last_changed, ha.last_updated, ha.context.id)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "state": self.state,
                "attributes": dict(self.attributes),
                "last_changed": self.last_changed.isoformat(),
                "last_updated": self.last_updated.isoformat(),
                "context_id": self.context_id,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Projected:
        d = json.loads(raw)
        return cls(
            d["state"],
            d["attributes"],
            datetime.fromisoformat(d["last_changed"]),
            datetime.fromisoformat(d["last_updated"]),
            d["context_id"],
        )

    def entity_state(self) -> EntityState:
        return EntityState(
            state=self.state,
            attributes=dict(self.attributes),
            last_changed=self.last_changed,
            last_updated=self.last_updated,
        )


class Projection:
    """entity id -> Projected. Not thread-safe; owned by the bridge."""

    def __init__(self, entities: Mapping[str, Projected] | None = None) -> None:
        self._entities: dict[str, Projected] = dict(entities or {})

    def __len__(self) -> int:
        return len(self._entities)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entities)

    def get(self, entity_id: str) -> Projected | None:
        return self._entities.get(entity_id)

    def has_seen(self, ha: HaState) -> bool:
        """Whether this version (or a newer one) of the entity was already published."""
        known = self._entities.get(ha.entity_id)
        return known is not None and known.last_updated >= ha.last_updated

    def put(self, entity_id: str, projected: Projected) -> None:
        self._entities[entity_id] = projected

    def remove(self, entity_id: str) -> None:
        self._entities.pop(entity_id, None)

    def snapshot(self) -> dict[str, Projected]:
        return dict(self._entities)


async def load_projection(nc: Client, bucket: str, *, within: float = 30.0) -> Projection:
    """The projection as the KV bucket holds it (`ruby_natsx.kvread`, no consumer created).

    An unreadable entry is skipped with a warning: its entity is then unknown, and
    reconciliation publishes it afresh.
    """
    entities: dict[str, Projected] = {}
    for key, raw in (await read_bucket(nc, bucket, within=within)).items():
        try:
            entities[key] = Projected.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable projection entry skipped", key=key, error=str(exc))
    return Projection(entities)
