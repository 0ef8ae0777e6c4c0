"""Trigger kinds: what starts a rule."""
