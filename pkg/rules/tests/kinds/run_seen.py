"""Run in a fresh interpreter by `test_new_kind`: register the kinds of `seen`, run rules that
use them through the unchanged engine, print what happened as one JSON object."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.engine import RuleEngine
from ruby_schemas.ha_events import EntityState

RULES = """
rules:
  - id: wake
    description: the bedroom light at the wake-up time an entity holds
    triggers:
      - kind: clock_from
        entity_id: input_text.wake
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.bedroom}}
  - id: first
    description: the hall light when the first thing turns on
    triggers:
      - kind: first_on
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.hall}}
"""

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def state(value: str, at: datetime) -> EntityState:
    return EntityState(state=value, last_changed=at, last_updated=at)


def main() -> None:
    importlib.import_module("seen")  # registers the kinds before the registry freezes
    loaded = load_text(RULES, "seen.yaml")
    if not loaded.ok:
        print(json.dumps({"errors": [str(error) for error in loaded.errors]}))
        sys.exit(1)
    engine = RuleEngine(tz=UTC)
    engine.set_states({"input_text.wake": state("07:00", T0)})
    engine.set_rules(loaded.rules, T0)
    out: dict[str, list[object]] = {"deadlines": [], "commands": []}

    def deadline() -> None:
        record = engine.timers.get("at.wake.0")
        at = None if record is None else record.deadline
        out["deadlines"].append(None if at is None else at.isoformat())

    def change(n: int, entity_id: str, old: str | None, new: str, at: datetime) -> None:
        before = None if old is None else state(old, at - timedelta(seconds=1))
        effects = engine.on_state_changed(
            event_id=f"evt-{n}", entity_id=entity_id, old=before, new=state(new, at), now=at
        )
        out["commands"] += [f"{c.rule_id} {c.domain}.{c.service}" for c in effects.commands]

    deadline()  # armed from the state at start: 07:00
    change(1, "input_text.wake", "07:00", "06:30", T0 + timedelta(minutes=1))
    deadline()  # moved to 06:30
    change(2, "input_text.wake", "06:30", "not a time", T0 + timedelta(minutes=2))
    deadline()  # no valid time: disarmed
    change(3, "input_text.wake", "not a time", "06:45", T0 + timedelta(minutes=3))
    deadline()  # armed again
    fire = T0 + timedelta(minutes=45)
    for key in engine.due(fire):
        out["commands"] += [f"{c.rule_id} {c.domain}.{c.service}" for c in
                            engine.fire(key, fire).commands]  # fmt: skip
    deadline()  # tomorrow 06:45
    change(4, "switch.a", "off", "on", fire + timedelta(minutes=1))  # the first on: fires
    change(5, "switch.b", "off", "on", fire + timedelta(minutes=2))  # another: does not
    print(json.dumps(out))


if __name__ == "__main__":
    main()
