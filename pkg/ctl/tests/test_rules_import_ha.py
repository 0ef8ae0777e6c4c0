"""`rubyctl rules import-ha`: Home Assistant automations in, native rules out, refusals located."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruby_ctl.cli import main
from ruby_rules import load_file

AUTOMATIONS = """\
- id: hall_on
  alias: Hall light on with motion
  trigger:
    - platform: state
      entity_id: binary_sensor.hall_motion
      to: "on"
  action:
    - service: light.turn_on
      entity_id: light.hall
      data_template:
        brightness_pct: "{{ 20 if now().hour >= 22 else 80 }}"
    - delay: {minutes: 5}
    - service: light.turn_off
      entity_id: light.hall

- alias: Porch on a button
  triggers:
    - trigger: device
      device_id: abc
  actions:
    - action: light.turn_on
      target: {entity_id: light.porch}

- alias: Coffee at 6:45
  triggers:
    - trigger: time
      at: "06:45:00"
  conditions:
    - condition: time
      weekday: [mon, tue, wed, thu, fri]
  actions:
    - action: switch.turn_on
      target: {entity_id: switch.coffee}
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_writes_what_loads_and_lists_the_rest_with_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "automations.yaml"
    source.write_text(AUTOMATIONS)
    target = tmp_path / "native" / "from_ha.yaml"
    target.parent.mkdir()
    code, out, err = cli(capsys, "rules", "import-ha", str(source), "-o", str(target))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == (
        f"{source}:18:7: rule 'porch_on_a_button' (id derived from its alias): "
        "triggers[0].trigger: device trigger is not supported yet"
    )
    assert lines[1] == f"note: {source}:24: id 'coffee_at_6_45' derived from its alias"
    assert lines[-1] == (
        "rubyctl rules import-ha: 2 of 3 automations load; the others need: device trigger (1); "
        f"2 rules written to {target}"
    )
    # The native file loads back to the very same rules (same versions, so same command ids).
    written = load_file(target)
    assert written.ok, written.errors
    direct = load_file(source)
    assert [(r.id, r.version) for r in written.rules] == [(r.id, r.version) for r in direct.rules]
    native = target.read_text()
    assert "kind: call" in native
    assert "duration: 5m" in native
    code, out, _ = cli(capsys, "rules", "check", "--dir", str(target.parent))
    assert (code, out.strip()) == (0, "2 rules in 1 file OK")


def test_a_clean_import_goes_to_standard_output_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "automations.yaml"
    source.write_text(AUTOMATIONS.split("\n- alias: Porch")[0] + "\n")
    code, out, err = cli(capsys, "rules", "import-ha", str(source))
    assert code == 0
    assert out.startswith("# Written by rubyctl rules import-ha")
    assert "- id: hall_on\n" in out
    assert err.strip().endswith("1 of 1 automation load; 1 rule written to standard output")


def test_a_native_file_or_a_missing_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "rules", "import-ha", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: no such file" in err
    native = tmp_path / "native.yaml"
    native.write_text("rules: []\n")
    code, _, err = cli(capsys, "rules", "import-ha", str(native))
    assert code == 1
    assert f"{native}: no Home Assistant automations here" in err


def test_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["rules", "import-ha", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: rubyctl rules import-ha [-h] [-o OUT] FILE [FILE ...]" in text
    assert "device trigger is not supported yet" in " ".join(text.split())


def test_automations_pasted_into_a_native_file_are_imported_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(
        "rules:\n"
        "  - id: native\n"
        "    description: Native.\n"
        '    triggers: [{kind: time, at: "07:00"}]\n'
        "    actions: [{kind: call, service: scene.turn_on, target: {entity_id: scene.x}}]\n"
        "  - alias: Pasted\n"
        '    trigger: {platform: time, at: "08:00"}\n'
        "    action: {service: scene.turn_on, entity_id: scene.y}\n"
    )
    code, out, err = cli(capsys, "rules", "import-ha", str(mixed))
    assert code == 0, err
    assert "- id: native\n" in out
    assert "- id: pasted\n" in out
    assert f"note: {mixed}:6: id 'pasted' derived from its alias" in err
    assert "1 of 1 automation load; 2 rules written" in err
