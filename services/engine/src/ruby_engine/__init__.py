"""Ruby Core engine service."""
