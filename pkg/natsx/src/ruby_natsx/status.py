"""Service status records: what a service writes about itself under its own status key.

A record is JSON with at least ``ready`` (bool) and ``updated`` (ISO time). Readiness checks
(`rubyctl up`, tests) need it ready *and* written after a given time, so a record a killed
process left behind does not count.
"""

from __future__ import annotations

import json
from datetime import datetime

import nats.errors
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue


def fresh_ready(data: bytes | None, since: datetime | None) -> bool:
    """Whether a status record says ``ready: true`` and was written after ``since``."""
    try:
        record = json.loads(data or b"")
        fresh = since is None or datetime.fromisoformat(record["updated"]) > since
        return record["ready"] is True and fresh
    except (ValueError, TypeError, KeyError):
        return False


async def status_ready(kv: KeyValue, key: str, since: datetime | None = None) -> bool:
    """Whether the record ``key`` of the status bucket ``kv`` is ready and fresh."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, nats.errors.TimeoutError):
        return False
    return fresh_ready(entry.value, since)
