"""Ruby Core runtime."""
