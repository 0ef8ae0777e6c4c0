"""Logical processors: trigger, condition and action kinds, found through one registry."""
