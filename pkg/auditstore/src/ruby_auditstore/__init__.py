"""The audit store: append-only, hash-chained audit records (SQLite; ADR-0019)."""

from ruby_auditstore.store import AuditStore, Broken, StoredRecord, Verified

__all__ = ["AuditStore", "Broken", "StoredRecord", "Verified"]
