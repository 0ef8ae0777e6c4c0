"""The committed JSON Schemas match the models; the exporter owns exactly its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruby_schemas import REGISTRY
from ruby_schemas.export import MARKER, drift, expected_files, main, message_schema, write

JSON_DIR = Path(__file__).resolve().parents[1] / "json"


def test_committed_schemas_match_the_models() -> None:
    problems = drift(JSON_DIR)
    assert not problems, "JSON Schemas drifted from the models; run `make schemas`:\n" + "\n".join(
        problems
    )


def test_one_file_per_registered_type() -> None:
    assert sorted(expected_files()) == sorted(f"{t}.json" for t in REGISTRY)


def test_schema_pins_the_type_and_forbids_unknown_fields() -> None:
    schema = message_schema("ha.state_changed.v1")
    assert schema["properties"]["type"]["const"] == "ha.state_changed.v1"
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["StateChangedV1"]["additionalProperties"] is False
    assert set(schema["required"]) == {"id", "type", "source", "time", "correlation_id", "data"}


def test_rendering_is_deterministic() -> None:
    first, second = expected_files(), expected_files()
    assert first == second
    for content in first.values():
        assert content.endswith("}\n")
        assert json.loads(content)["$comment"] == MARKER


def test_write_then_check_is_clean(tmp_path: Path) -> None:
    assert len(write(tmp_path)) == len(REGISTRY)
    assert write(tmp_path) == []
    assert drift(tmp_path) == []
    assert main([str(tmp_path), "--check"]) == 0


def test_check_reports_edited_missing_and_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path)
    (tmp_path / "ha.event.v1.json").write_text("{}\n")
    (tmp_path / "rule.fired.v1.json").unlink()
    stale = json.loads((tmp_path / "rule.loaded.v1.json").read_text())
    (tmp_path / "rule.loaded.v0.json").write_text(json.dumps(stale))

    assert main([str(tmp_path), "--check"]) == 1
    report = capsys.readouterr().err
    assert "ha.event.v1.json: differs from the models" in report
    assert "rule.fired.v1.json: missing" in report
    assert "rule.loaded.v0.json: stale" in report
    assert "make schemas" in report


def test_write_removes_only_stale_files_it_owns(tmp_path: Path) -> None:
    write(tmp_path)
    owned = json.loads((tmp_path / "rule.loaded.v1.json").read_text())
    (tmp_path / "old.type.v1.json").write_text(json.dumps(owned))
    (tmp_path / "hand-written.json").write_text('{"title": "mine"}')
    (tmp_path / "notes.txt").write_text("keep")

    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "old.type.v1.json").exists()
    assert (tmp_path / "hand-written.json").exists()
    assert (tmp_path / "notes.txt").exists()
    assert drift(tmp_path) == []
