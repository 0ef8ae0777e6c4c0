"""Finding one state change in EVENTS by its id, with no consumer (``STREAM.MSG.GET`` only).

``rubyctl audit why`` and the audit sink (answering ``GET /audit/why``) both need the state
change that triggered a rule, to follow its Home Assistant context further back. A consumer
would need the right to create one on EVENTS; a message get by subject and start time needs
only ``$JS.API.STREAM.MSG.GET.<EVENTS>``, which the sink is granted (ADR-0036).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.aio.client import Client

from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, topology
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.registry import decode

SEARCH_MARGIN: Final = timedelta(hours=1)
"""How long before a change's own time its event is looked for (clock skew, late publishes)."""
MAX_SCAN: Final = 2000
"""How many messages of the entity's subject are read at most before giving up."""
REQUEST_TIMEOUT: Final = 5.0
"""Seconds one message get may take."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Raw:
    seq: int
    data: bytes


class StateChanges:
    """Finds state changes in EVENTS by envelope id. Any number of concurrent `find` calls."""

    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self._nc, self._subjects = nc, subjects
        self._api = f"$JS.API.STREAM.MSG.GET.{topology(subjects).stream(EVENTS).name}"

    async def find(self, event_id: str, entity_id: str, at: datetime | None) -> Envelope[Payload]:
        """The envelope with id ``event_id`` on the entity's subject; ``LookupError`` if gone.

        The entity's last message first (a trigger is often the latest); else the subject's
        messages from a little before ``at``, in stream order, up to `MAX_SCAN` of them.
        ``nats.errors.TimeoutError`` when the server does not answer.
        """
        subject = self._subjects.ha_state(entity_id)
        last = await self._get({"last_by_subj": subject})
        if last is None:
            raise LookupError(event_id)
        found = _decoded(last.data, event_id)
        if found is not None:
            return found
        since = (at or _EPOCH) - SEARCH_MARGIN
        start = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raw = await self._get({"start_time": start, "next_by_subj": subject})
        for _ in range(MAX_SCAN):
            if raw is None or raw.seq >= last.seq:
                break
            found = _decoded(raw.data, event_id)
            if found is not None:
                return found
            raw = await self._get({"seq": raw.seq + 1, "next_by_subj": subject})
        raise LookupError(event_id)

    async def _get(self, request: dict[str, object]) -> _Raw | None:
        reply = await self._nc.request(
            self._api, json.dumps(request).encode(), timeout=REQUEST_TIMEOUT
        )
        try:
            message = json.loads(reply.data)["message"]
            return _Raw(int(message["seq"]), base64.b64decode(message.get("data") or ""))
        except (ValueError, KeyError, TypeError):
            return None  # no such message (an error answer), or nothing readable


def _decoded(data: bytes, event_id: str) -> Envelope[Payload] | None:
    try:
        envelope = decode(data)
    except ContractError:
        return None
    return envelope if envelope.id == event_id else None
