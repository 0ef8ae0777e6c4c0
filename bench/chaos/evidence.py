"""Reading the evidence: Home Assistant's events, the audit store's records, the engine's traces.

Pure parsing (no I/O): each function takes what was received or printed and returns the
`chaos.model` objects the analysis works on. Whatever does not look as expected is skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chaos.model import AuditFacts, Call, Change

SUPERSEDED = "superseded"
"""The word the engine's skipped runs and the gateway's refusals carry for a stale command."""


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _context_id(message: Mapping[str, Any]) -> str:
    context = message.get("context")
    return str(context.get("id", "")) if isinstance(context, Mapping) else ""


def change_from_event(event: Mapping[str, Any]) -> Change | None:
    """A `Change` from a ``state_changed`` event (the ``event`` of an HA ``event`` message)."""
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(new := data.get("new_state"), Mapping):
        return None
    at = _timestamp(new.get("last_updated"))
    entity_id = data.get("entity_id")
    if at is None or not isinstance(entity_id, str):
        return None
    return Change(entity_id, str(new.get("state")), at, _context_id(new))


def call_from_event(event: Mapping[str, Any]) -> Call | None:
    """A `Call` from a ``call_service`` event; its entities from ``service_data.entity_id``."""
    data = event.get("data")
    at = _timestamp(event.get("time_fired"))
    if not isinstance(data, Mapping) or at is None:
        return None
    service_data = data.get("service_data")
    ids = service_data.get("entity_id") if isinstance(service_data, Mapping) else None
    entity_ids = (ids,) if isinstance(ids, str) else tuple(str(i) for i in ids or ())
    return Call(
        str(data.get("domain")), str(data.get("service")), entity_ids, _context_id(event), at
    )


def audit_facts(lines: Iterable[str], rules: Iterable[str]) -> AuditFacts:
    """`AuditFacts` from ``rubyctl audit query --json`` output (one record per line).

    ``rules`` are the chaos rules' ids: only their ``rule.fired`` records are counted.
    """
    targets = {f"rule:{r}" for r in rules}
    executed: Counter[str] = Counter()
    contexts: dict[str, set[str]] = {}
    refused: dict[str, str] = {}
    actions: Counter[str] = Counter()
    fired = 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        action = str(record.get("action"))
        actions[action] += 1
        details = record.get("details")
        details = details if isinstance(details, dict) else {}
        command_id = details.get("command_id")
        if action == "command.executed" and isinstance(command_id, str):
            executed[command_id] += 1
            if isinstance(context := details.get("ha_context_id"), str):
                contexts.setdefault(context, set()).add(command_id)
        elif action == "command.refused" and isinstance(command_id, str):
            refused[command_id] = str(record.get("reason", ""))
        elif action == "rule.fired" and record.get("target") in targets:
            fired += 1
    shared = sum(len(ids) > 1 for ids in contexts.values())
    return AuditFacts(dict(executed), frozenset(contexts), shared, refused, fired, dict(actions))


@dataclass
class TraceCounts:
    """The engine's recorded runs of the chaos rules, by status (it keeps the last few per
    rule), and how many of them were skipped as superseded."""

    runs: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    superseded: int = 0

    def add_runs(self, lines: Iterable[str]) -> None:
        """Count the runs of ``rubyctl rules trace RULE --json`` (one run per line)."""
        for line in lines:
            try:
                run = json.loads(line)
            except ValueError:
                continue
            if not isinstance(run, dict):
                continue
            self.runs += 1
            self.by_status[str(run.get("status", "?"))] += 1
            if SUPERSEDED in str(run.get("reason", "")).lower():
                self.superseded += 1
