"""Ruby Core ctl."""
