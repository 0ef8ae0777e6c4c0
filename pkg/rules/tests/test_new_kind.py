"""A new kind is one module: a test-only ``flip`` trigger runs through the unchanged engine,
and the engine's core dispatches on no processor type."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import ruby_rules.engine
from ruby_rules.engine.ids import command_id

KINDS = Path(__file__).parent / "kinds"
ENGINE = Path(ruby_rules.engine.__file__).parent


def _run_in_fresh_interpreter(script: str) -> dict[str, list[object]]:
    # A fresh interpreter: the registry freezes once per process, after the kinds register.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(KINDS), *sys.path])}
    done = subprocess.run(
        [sys.executable, str(KINDS / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out: dict[str, list[object]] = json.loads(done.stdout)
    return out


def test_a_trigger_kind_in_one_module_is_indexed_and_runs_its_rule() -> None:
    out = _run_in_fresh_interpreter("run_flip.py")
    assert out["statuses"] == ["finished", "finished"]
    [version] = [str(v) for v in out["version"]]
    # The engine's usual ids: rule, version, triggering message (changes 1 and 5), position.
    assert out["commands"] == [
        f"light.toggle {command_id('flipped', version, 'evt-1', (0,))}",
        f"light.toggle {command_id('flipped', version, 'evt-5', (0,))}",
    ]
    assert out["built"] == ["switch.wall"]  # compiled once at load, never per event


def test_triggers_read_every_state_and_a_timed_one_follows_the_entity_it_reads() -> None:
    out = _run_in_fresh_interpreter("run_seen.py")
    assert out["deadlines"] == [
        "2026-11-20T07:00:00+00:00",  # armed from the entity's state at start
        "2026-11-20T06:30:00+00:00",  # the entity changed: armed anew
        None,  # no valid time in it: disarmed, nothing fires
        "2026-11-20T06:45:00+00:00",
        "2026-11-21T06:45:00+00:00",  # fired, then armed for the next day
    ]
    # Fired once at 06:45; ``first_on`` saw every state: only the first ``on`` fires it.
    assert out["commands"] == ["wake light.turn_on", "first light.turn_on"]


def _isinstance_targets(source: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names.append(ast.unparse(node.args[1]))
    return names


def test_the_engine_core_dispatches_on_no_processor_type() -> None:
    found = {
        path.name: _isinstance_targets(path.read_text(encoding="utf-8"))
        for path in sorted(ENGINE.glob("*.py"))
    }
    processors = [
        (name, target)
        for name, targets in found.items()
        for target in targets
        if any(word in target for word in ("Trigger", "Action", "Condition", "Config"))
    ]
    assert processors == []
    imports = [
        (path.name, line.strip())
        for path in sorted(ENGINE.glob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if "ruby_rules.processors." in line
        and "import" in line
        and not any(ok in line for ok in ("protocols", ".base ", "registry"))
    ]
    assert imports == []  # no kind module is imported by the core
