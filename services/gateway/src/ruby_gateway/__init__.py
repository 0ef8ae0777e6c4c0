"""Ruby Core gateway service."""
