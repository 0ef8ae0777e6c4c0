"""Ruby Core audit_sink service."""
