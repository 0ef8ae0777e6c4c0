"""Hostile rule files: every one is a located error or a bounded refusal, never a crash or hang.

What an outside probe dropped into a rules directory (issue 12, item 5), and what else an
attacker with write access to it would try against a YAML loader, a validator and an
expression language: special files (a FIFO, links to endless devices, a directory, a sparse
file of gigabytes), values out of range (durations that overflowed `timedelta`, 5,000-character
ids that ended up in subjects, booleans taken as numbers), YAML bombs (aliases, nesting, tiny
values by the hundred thousand, long texts aliased), and sandbox escapes in templates
(those are in ``test_template_hostile.py``).
Each case runs against a deadline (`bounded`), so a hang fails the test instead of stalling it.
The same directory goes through `rubyctl rules check` as a process, with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from ruby_rules import LoadResult, load_dir, load_file, load_text
from ruby_rules.errors import MAX_ERRORS, MAX_MESSAGE
from ruby_rules.files import MAX_FILE_BYTES
from ruby_rules.processors.types import MAX_ID_LENGTH
from ruby_rules.ruleset import RuleSet

HANG_AFTER = 300
"""Seconds after which a `rubyctl` run counts as hung. A hang detector, not a speed limit: a
FIFO or /dev/zero used to hang it for ever; a check of the hostile directory takes 2.5 s on an
idle 2-core machine, 8 s with six CPU hogs, and once took over 90 s under `make test-busy` with
other suites running beside it."""

T = TypeVar("T")
DEADLINE = 30.0
"""Seconds any one load may take on a busy 2-core machine (the densest 128 KiB takes ~4 s)."""

RULE = """\
rules:
  - id: {id}
    description: a rule with one hostile value
    mode: {mode}
    triggers:
      - {{kind: state, entity_id: binary_sensor.motion, to: "on", for: {for_}}}
      - {{kind: numeric_state, entity_id: sensor.power, above: {above}}}
    actions:
      - {{kind: call, service: light.turn_on, target: {{entity_id: light.hall}}, data: {data}}}
"""
DEFAULTS = {"id": "hostile", "mode": "single", "for_": "5m", "above": "10", "data": "{}"}
GOOD = RULE.format(**{**DEFAULTS, "id": "good"})


def rule(**values: str) -> str:
    return RULE.format(**{**DEFAULTS, **values})


def bounded(work: Callable[[], T], seconds: float = DEADLINE) -> T:
    """``work()``, failing the test if it takes longer than ``seconds`` (it may never end)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(work).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def only_error(result: LoadResult) -> str:
    """The one error of a refused file, as ``file:line:column: message``."""
    assert result.rules == ()
    [error] = result.errors
    return str(error)


# --- special files --------------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")  # nobody ever writes: reading it would block forever
    error = only_error(bounded(lambda: load_file(tmp_path / "pipe.yaml", name="pipe.yaml")))
    assert error == (
        "pipe.yaml:1:1: refused: a named pipe (FIFO), not a regular file: a rule file must be one"
    )


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_link_to_a_device_is_refused_without_reading_it(tmp_path: Path, device: str) -> None:
    (tmp_path / "dev.yaml").symlink_to(device)
    error = only_error(bounded(lambda: load_file(tmp_path / "dev.yaml", name="dev.yaml")))
    assert error == (
        "dev.yaml:1:1: refused: a symbolic link to a character device, not a regular file: "
        "a rule file must be one"
    )


def test_a_directory_and_a_dangling_link_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nowhere")
    assert "refused: a directory" in only_error(load_file(tmp_path / "dir.yaml"))
    assert "cannot read the file (a symbolic link): No such file" in only_error(
        load_file(tmp_path / "gone.yaml")
    )


def test_a_link_to_a_regular_rule_file_still_loads(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text(GOOD)
    (tmp_path / "linked.yaml").symlink_to(tmp_path / "real.txt")
    assert [r.id for r in load_file(tmp_path / "linked.yaml").rules] == ["good"]


def test_a_huge_file_is_refused_by_its_size_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as out:  # sparse: 8 GiB that take no disk and would take long to read
        out.truncate(8 * 1024**3)
    started = time.monotonic()
    error = only_error(bounded(lambda: load_file(huge, name="huge.yaml")))
    assert time.monotonic() - started < 5
    assert error == (
        f"huge.yaml:1:1: refused: 8,589,934,592 bytes, more than {MAX_FILE_BYTES:,} bytes, the "
        "most a rule file may have: split its rules into several files"
    )
    just_over = tmp_path / "over.yaml"
    just_over.write_bytes(GOOD.encode() + b"#" * MAX_FILE_BYTES)
    assert "refused:" in only_error(load_file(just_over))
    at_limit = tmp_path / "limit.yaml"
    at_limit.write_bytes(GOOD.encode() + b"#" * (MAX_FILE_BYTES - len(GOOD.encode())))
    assert [r.id for r in load_file(at_limit).rules] == ["good"]


def test_a_good_file_replaced_by_a_fifo_keeps_its_rules_running(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    ruleset = RuleSet(tmp_path)
    ruleset.load_all()
    (tmp_path / "a.yaml").unlink()
    os.mkfifo(tmp_path / "a.yaml")
    change = bounded(lambda: ruleset.reload("a.yaml"))
    assert [r.id for r in change.kept] == ["good"]
    assert "named pipe" in str(change.rejected[0])
    assert [r.id for r in ruleset.rules] == ["good"]  # refused, not taken as deleted


def test_a_file_name_that_would_forge_output_is_refused_and_shown_escaped(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    bad = os.fsdecode(b"bad\xff\n\x1b[31m.yaml")  # not UTF-8, a newline, a terminal escape
    (tmp_path / bad).write_text(rule(id="other"))
    shown = "bad\\xff\\n\\x1b[31m.yaml"
    result = load_dir(tmp_path)
    assert [r.id for r in result.rules] == ["good"]
    assert [str(error) for error in result.errors] == [
        f"{shown}:1:1: refused: the file name has control characters or bytes that are not "
        "UTF-8: rename it"
    ]
    ruleset = RuleSet(tmp_path)
    [change] = [change for change in ruleset.load_all() if change.rejected]
    assert change.file == shown
    assert change.rejected[0].to_contract().model_dump_json()  # encodes: no lone surrogate


def test_control_characters_in_values_are_escaped_in_messages() -> None:
    """A message is one printable line: no forged output lines, no terminal escapes."""
    text = rule(data='{x: "{{ \\e[2J\\nfake.yaml:1:1: all good \\x00 }}"}')
    [error] = load_text(text, "r.yaml").errors
    assert str(error).isprintable()
    assert "\\x1b[2J fake.yaml:1:1: all good \\x00" in error.message  # lines are joined


# --- values out of range --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "message"),
    [
        (
            rule(for_="99999999999h"),
            "9999",
            "triggers[0].for: duration '99999999999h' out of range",
        ),
        (rule(for_="'99999999999:00:00'"), "'9999", "out of range: at most 366 days"),
        (rule(for_="9" * 4000), "9999", "duration a number that large out of range"),
        (rule(for_="367d"), "367d", "invalid duration '367d'"),
        (rule(for_="8785h"), "8785h", "duration '8785h' out of range"),
        (rule(for_=".nan"), ".nan", "'.nan' is not a finite number"),
        (rule(for_="-1s"), "-1s", "invalid duration '-1s'"),
        (
            rule(id="x\n    backlog: {max_lateness: 99999999999h}"),
            "9999",
            "backlog.max_lateness: duration '99999999999h' out of range",
        ),
        (
            rule(id="x\n    on_missed: {max_lateness: 999999999999}"),
            "9999",
            "on_missed.max_lateness: duration 999999999999 out of range",
        ),
        (rule(above="true"), "true", "triggers[1].above: expected a number; got true/false"),
        (rule(above="'3'"), "'3'", "triggers[1].above: expected a number or an entity of"),
        (rule(above="1" + "0" * 400), "1000", "above: number out of range"),
        (rule(above="1.0e+400"), "1.0e", "'1.0e+400' is not a finite number"),
        (rule(above=".inf"), ".inf", "'.inf' is not a finite number"),
        (rule(mode="queued\n    max: true"), "true", "max: expected a whole number; got true"),
        (rule(mode="queued\n    max: '5'"), "'5'", "max: expected a whole number; got text"),
        (rule(mode="queued\n    max: 1001"), "1001", "max: 1001 out of range: expected a whole"),
        (rule(mode="queued\n    max: " + "9" * 4000), "9999", "max: a number that large out of"),
        (rule(data="{x: .inf}"), ".inf", "'.inf' is not a finite number"),
        (rule(data="{x: 1" + "0" * 5000 + "}"), "1000", "unreadable int"),
    ],
)
def test_out_of_range_values_are_located_errors(text: str, value: str, message: str) -> None:
    """Each error sits where the hostile value starts; none is an exception."""
    [error] = load_text(text, "r.yaml").errors
    assert (error.line, error.column) == position(text, value), str(error)
    assert message in error.message
    assert len(error.message) <= MAX_MESSAGE


def position(text: str, value: str) -> tuple[int, int]:
    """The 1-based line and column where ``value`` first occurs in ``text``."""
    offset = text.index(value)
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


@pytest.mark.parametrize(
    "text",
    [
        rule(id="a" * 5000),
        rule(id="a" * (MAX_ID_LENGTH + 1)),
        rule(for_="1s}\n      - {kind: event, event_type: " + "e" * 300 + "}\n"
                  "      - {kind: time, at: '07:00'"),
        rule(for_="1s, id: " + "t" * 5000),
        rule(data="{}}\n      - {kind: call, service: " + "a" * 5000 + ".b"),
        rule(data="{}, target: {entity_id: light." + "x" * 300 + "}"),
        rule(data="{}, target: {area_id: " + "k" * 100 + "}"),
        rule(data="{}}\n      - {kind: stop, reason: x, error: 1"),
        rule(data="{}}\n      - {kind: wait_for, trigger: {kind: event, event_type: e}, "
                  "timeout: 1s, continue_on_timeout: 'yes'"),
    ],
)  # fmt: skip
def test_ids_that_would_not_fit_a_subject_and_wrong_types_are_refused(text: str) -> None:
    """Ids end up in subjects, KV keys and headers: bounded, and never quoted in full."""
    result = load_text(text, "r.yaml")
    assert result.rules == ()
    [error] = result.errors
    assert error.line > 1
    assert error.column > 1
    assert error.rule_id in (None, "hostile")  # only a valid id names a subject
    assert len(str(error)) <= MAX_MESSAGE + 20


def test_the_longest_allowed_id_loads() -> None:
    text = rule(id="a" * MAX_ID_LENGTH, for_="8784h", above="1.0e+15")
    assert [r.id for r in load_text(text, "r.yaml").rules] == ["a" * MAX_ID_LENGTH]


# --- YAML bombs -----------------------------------------------------------------------------


def _alias_bomb_of_texts() -> str:
    big = "x" * 50_000
    return f"big: &big {big}\nmany: [{', '.join(['*big'] * 1000)}]\nrules: []\n"


def _nested_aliases() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nrules: []\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_nested_aliases(), "too many values (over 100000)"),
        (_alias_bomb_of_texts(), "too much text (over 1000000 characters, each alias counted)"),
        ("rules: " + "[" * 100_000 + "]" * 100_000, "nested deeper"),
        ("rules: " + "{a: " * 30_000 + "b" + "}" * 30_000, "nested deeper"),
        ("rules: [" + "a," * 64_000 + "]", "expected a mapping (one rule)"),
        ("rules: []\nx: " + "a" * (MAX_FILE_BYTES - 20), "unknown key 'x'"),
        ("rules: []\n" + "".join(f"k{i}: v\n" for i in range(14_000)), "unknown key 'k0'"),
    ],
    ids=["aliases", "aliased-texts", "deep-lists", "deep-maps", "tiny-values", "long-text", "keys"],
)
def test_yaml_bombs_are_refused_at_a_bounded_cost(text: str, message: str) -> None:
    started = time.monotonic()
    result = bounded(lambda: load_text(text, "bomb.yaml"))
    took = time.monotonic() - started
    assert result.rules == ()
    assert message in result.errors[0].message
    assert len(result.errors) <= MAX_ERRORS  # a refusal small enough to log, audit, announce
    assert all(len(error.message) <= MAX_MESSAGE for error in result.errors)
    assert took < DEADLINE


# --- the whole directory, through `rubyctl rules check` -------------------------------------


def hostile_directory(root: Path) -> dict[str, str]:
    """A rules directory with one good file and one of each hostile kind; name -> expected."""
    root.mkdir()
    (root / "good.yaml").write_text(GOOD)
    os.mkfifo(root / "fifo.yaml")
    (root / "zero.yaml").symlink_to("/dev/zero")
    (root / "urandom.yaml").symlink_to("/dev/urandom")
    (root / "duration.yaml").write_text(rule(id="dur", for_="99999999999h"))
    (root / "lateness.yaml").write_text(rule(id="late\n    backlog: {max_lateness: 9999999999h}"))
    (root / "long_id.yaml").write_text(rule(id="i" * 5000))
    (root / "max.yaml").write_text(rule(id="m", mode="queued\n    max: true", above="true"))
    (root / "bomb.yaml").write_text(_nested_aliases())
    (root / "escape.yaml").write_text(rule(id="esc", data="{x: \"{{ ''.__class__.__mro__ }}\"}"))

    def at(name: str, value: str) -> str:
        line, column = position((root / name).read_text(), value)
        return f"{name}:{line}:{column}:"

    return {
        "fifo.yaml": "fifo.yaml:1:1: refused: a named pipe (FIFO)",
        "zero.yaml": "zero.yaml:1:1: refused: a symbolic link to a character device",
        "urandom.yaml": "urandom.yaml:1:1: refused: a symbolic link to a character device",
        "duration.yaml": at("duration.yaml", "9999") + " rule 'dur': triggers[0].for: duration",
        "lateness.yaml": at("lateness.yaml", "9999")
        + " rule 'late': backlog.max_lateness: duration",
        "long_id.yaml": at("long_id.yaml", "iii") + " rules[0]: id: invalid id 'iii",
        "max.yaml": at("max.yaml", "true") + " rule 'm': max: expected a whole number",
        "bomb.yaml": "bomb.yaml:",
        "escape.yaml": at("escape.yaml", '"{{')
        + " rule 'esc': actions[0].data.x: invalid template",
    }


def test_load_dir_reports_every_hostile_file_and_loads_the_good_one(tmp_path: Path) -> None:
    expected = hostile_directory(tmp_path / "rules")
    result = bounded(lambda: load_dir(tmp_path / "rules"))
    assert [r.id for r in result.rules] == ["good"]
    by_file: dict[str, str] = {}
    for error in result.errors:
        by_file.setdefault(error.file, str(error))  # the first error of each file
    assert set(by_file) == set(expected)
    for name, start in expected.items():
        assert by_file[name].startswith(start), by_file[name]


@pytest.mark.timeout(HANG_AFTER + 60)
def test_rubyctl_rules_check_lists_each_hostile_file_and_exits_1(tmp_path: Path) -> None:
    expected = hostile_directory(tmp_path / "rules")
    done = rubyctl("rules", "check", "--dir", str(tmp_path / "rules"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    for start in expected.values():
        assert any(line.startswith(start) for line in lines), (start, done.stdout)
    assert lines[-1].endswith(f"in {len(expected)} files (in {tmp_path / 'rules'})")
    assert max(len(line) for line in lines) < MAX_MESSAGE + 100


@pytest.mark.timeout(HANG_AFTER + 60)
@pytest.mark.parametrize("name", ["fifo.yaml", "zero.yaml", "duration.yaml", "bomb.yaml"])
def test_rubyctl_rules_test_refuses_a_hostile_rule_file(tmp_path: Path, name: str) -> None:
    expected = hostile_directory(tmp_path / "rules")
    (tmp_path / "events.jsonl").write_text(
        '{"time": "2026-11-20T18:00:00Z", "entity_id": "binary_sensor.motion", "state": "on"}\n'
    )
    done = rubyctl("rules", "test", str(tmp_path / "rules" / name), "--events",
                   str(tmp_path / "events.jsonl"))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(str(tmp_path / "rules") + "/" + expected[name]), done.stderr
    assert "nothing was run" in done.stderr


def rubyctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``rubyctl ARGS`` as its own process, killed if it runs past the deadline."""
    return subprocess.run(  # our own CLI, with arguments we chose
        [sys.executable, "-m", "ruby_ctl", *args],
        capture_output=True,
        text=True,
        timeout=HANG_AFTER,
        check=False,
    )
