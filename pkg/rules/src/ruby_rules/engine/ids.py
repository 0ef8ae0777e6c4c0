"""Deterministic ids: the same rule version, trigger and triggering message give the same ids.

That is what makes a redelivered trigger (or a timer fired again after a crash) produce the
same command ids, which the gateway executes once (DESIGN.md promises 2 and 5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _digest(*parts: str, length: int) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()[:length]


def position(path: Sequence[int]) -> str:
    """An action's position in its rule: indexes into actions and branches, ``"2"``, ``"1.0.0"``."""
    return ".".join(str(step) for step in path)


def run_id(rule_id: str, version: str, trigger: str, event_id: str) -> str:
    """The id of the run a trigger starts on one message."""
    return f"{rule_id}-{_digest(rule_id, version, trigger, event_id, length=20)}"


def command_id(rule_id: str, version: str, event_id: str, path: Sequence[int]) -> str:
    """The id of the command an action sends: rule id, version, triggering message, position."""
    return f"cmd-{_digest(rule_id, version, event_id, position(path), length=32)}"


def event_id(rule_id: str, version: str, event_id: str, path: Sequence[int]) -> str:
    """The id of an event a ``publish`` action sends, derived like a command id."""
    return f"evt-{_digest(rule_id, version, event_id, position(path), length=32)}"


def fired_id(run: str) -> str:
    """The id of the ``rule.fired`` event of a run."""
    return f"fired-{run}"
