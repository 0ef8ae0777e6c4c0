"""The lean projection: entity -> state, selected attributes, last_changed, context id.

The in-memory map is the gateway's truth while it runs, updated only once JetStream stored the
change it reflects; the KV bucket is its durable copy, for restarts and for other readers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import JsonValue

from ruby_schemas.ha import HaState
from ruby_schemas.ha_events import EntityState

log = structlog.get_logger("ruby_gateway.projection")

SELECTED_ATTRIBUTES = ("friendly_name", "device_class", "unit_of_measurement", "brightness")
"""The attributes worth keeping in the lean projection; the events carry all of them."""


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


LOAD_PAGE = 1000
"""Entries per direct-get page when loading the projection."""


async def load_projection(nc: Client, bucket: str, *, within: float = 30.0) -> Projection:
    """The projection as the KV bucket holds it, read in pages of batched direct gets.

    The bucket keeps one revision per key, so its stream in sequence order is exactly the
    current entries (and delete markers, skipped). An unreadable entry is skipped with a
    warning: its entity is then unknown, and reconciliation publishes it afresh. Needs only
    the read grants a bucket reader has (``$JS.API.DIRECT.GET.KV_<bucket>``): no consumer is
    created.
    """
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    entities: dict[str, Projected] = {}
    page: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        page.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    try:
        async with asyncio.timeout(within):
            seq = 1
            while True:
                request = {"seq": seq, "batch": LOAD_PAGE, "next_by_subj": prefix + ">"}
                await nc.publish(
                    f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), inbox
                )
                while True:
                    msg = await page.get()
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "404":  # nothing (more) in the bucket
                        return Projection(entities)
                    if status is not None:  # 204 end of this page
                        if headers.get("Nats-Num-Pending", "0") == "0":
                            return Projection(entities)
                        break
                    seq = int(headers["Nats-Sequence"]) + 1
                    key = headers["Nats-Subject"].removeprefix(prefix)
                    if headers.get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
                        entities.pop(key, None)
                        continue
                    try:
                        entities[key] = Projected.from_json(msg.data)
                    except (ValueError, KeyError, TypeError) as exc:
                        # Unknown to the projection, so reconciliation publishes it afresh.
                        entities.pop(key, None)
                        log.warning("unreadable projection entry skipped", key=key, error=str(exc))
    finally:
        await sub.unsubscribe()
