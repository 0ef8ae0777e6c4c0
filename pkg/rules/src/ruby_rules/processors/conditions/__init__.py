"""Condition kinds: what must hold for a rule's actions to run."""
