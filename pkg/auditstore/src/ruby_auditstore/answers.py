"""The audit API's answers from one store: `records` (query) and `verification` (verify).

``why`` is `ruby_auditstore.why.follow`. Each reads; none writes. Call them in a worker thread
with a read-only store: SQLite may search a while, and the caller's loop keeps running.
"""

from __future__ import annotations

from datetime import datetime

from ruby_auditstore.store import AuditStore
from ruby_schemas.audit_api import (
    AuditQueryV1,
    AuditRecordsV1,
    AuditVerifiedV1,
    ChainBreak,
    StoredAuditRecord,
)


def records(store: AuditStore, query: AuditQueryV1) -> AuditRecordsV1:
    """The ``query.limit`` newest records matching every filter, oldest first."""
    found = list(
        store.query(
            since=query.since,
            until=query.until,
            actor=query.actor,
            action=query.action,
            target=query.target,
            limit=query.limit + 1,  # one more says whether older ones were left out
            newest_first=True,
        )
    )
    kept = found[: query.limit]
    return AuditRecordsV1(
        records=tuple(
            StoredAuditRecord(
                seq=s.seq,
                hash=s.hash,
                stored_at=datetime.fromisoformat(s.stored_at),
                record=s.record,
            )
            for s in reversed(kept)
        ),
        truncated=len(found) > query.limit,
    )


def verification(store: AuditStore, head: tuple[int, str] | None) -> AuditVerifiedV1:
    """Walk the chain; then, if it holds, compare it with ``head`` (seq, hash), the head the
    sink published, which the caller read *before* calling this."""
    verified = store.verify()
    broken = verified.broken
    if broken is None and head is not None:
        broken = store.against_head(verified, *head)
    return AuditVerifiedV1(
        ok=broken is None,
        count=verified.count,
        head_seq=verified.head_seq,
        head_hash=verified.head_hash,
        broken=None
        if broken is None
        else ChainBreak(seq=broken.seq, record_id=broken.record_id, reason=broken.reason),
        published_seq=None if head is None else head[0],
    )
