"""Run in a fresh interpreter by `test_new_kind`: register ``flip``, then load and run a rule
that uses it through the unchanged engine; print what happened as one JSON object."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.engine import RuleEngine
from ruby_schemas.ha_events import EntityState

RULE = """
rules:
  - id: flipped
    description: a wall switch flipped either way toggles the lamp
    triggers:
      - kind: flip
        entity_id: switch.wall
    actions:
      - kind: call
        service: light.toggle
        target: {entity_id: light.lamp}
"""

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def state(value: str, at: datetime) -> EntityState:
    return EntityState(state=value, last_changed=at, last_updated=at)


def main() -> None:
    # Registers the kind before anything freezes the registry (the test puts it on PYTHONPATH).
    flip = importlib.import_module("flip")
    loaded = load_text(RULE, "flip.yaml")
    if not loaded.ok:
        print(json.dumps({"errors": [str(error) for error in loaded.errors]}))
        sys.exit(1)
    engine = RuleEngine(tz=UTC)
    engine.set_rules(loaded.rules, T0)
    out: dict[str, list[object]] = {"commands": [], "statuses": []}
    changes = [
        ("switch.wall", "off", "on"),  # a flip: fires
        ("switch.other", "off", "on"),  # not watched: not even offered to the trigger
        ("switch.wall", "on", "unavailable"),  # no flip
        ("switch.wall", "unavailable", "off"),  # no flip
        ("switch.wall", "off", "on"),  # a flip again: fires
    ]
    for n, (entity_id, old, new) in enumerate(changes, start=1):
        at = T0 + timedelta(minutes=n)
        effects = engine.on_state_changed(
            event_id=f"evt-{n}",
            entity_id=entity_id,
            old=state(old, at - timedelta(seconds=1)),
            new=state(new, at),
            now=at,
        )
        out["commands"] += [f"{c.domain}.{c.service} {c.command_id}" for c in effects.commands]
        out["statuses"] += [trace.status for trace in effects.traces]
    out["built"] = list(flip.BUILT)
    out["version"] = [rule.version for rule in loaded.rules]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
