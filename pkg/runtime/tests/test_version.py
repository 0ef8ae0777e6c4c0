"""One version for the whole project, printed with the commit by every program."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ruby_runtime.version import VERSION, revision, version_line

ROOT = Path(__file__).resolve().parents[3]
PROGRAMS = ("rubyctl", "ruby-gateway", "ruby-engine", "ruby-audit-sink")


def test_every_workspace_member_carries_the_one_version() -> None:
    members = sorted(ROOT.glob("pkg/*/pyproject.toml")) + sorted(
        ROOT.glob("services/*/pyproject.toml")
    )
    assert len(members) >= 10
    found = {str(p.relative_to(ROOT)): tomllib.loads(p.read_text())["project"]["version"]
             for p in members}  # fmt: skip
    assert set(found.values()) == {VERSION}, found


def test_the_changelog_has_a_section_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\]", changelog, re.MULTILINE)
    assert "## [Unreleased]" in changelog


def test_the_revision_comes_from_the_build_else_from_git() -> None:
    assert revision({"RUBY_REVISION": " 0123456789ab "}) == "0123456789ab"
    assert version_line("ruby-engine", {"RUBY_REVISION": "abc"}) == (
        f"ruby-engine {VERSION} (commit abc)"
    )
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],  # noqa: S607  # git from PATH
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert revision({}).removesuffix("+dirty") == head


@pytest.mark.parametrize("program", PROGRAMS)
def test_each_program_prints_its_version_and_commit(program: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name(program)), "--version"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"RUBY_REVISION": "rev-under-test", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{program} {VERSION} (commit rev-under-test)"


@pytest.mark.parametrize("program", PROGRAMS[1:])
def test_a_service_answers_help_and_refuses_arguments_before_it_starts(program: str) -> None:
    exe = str(Path(sys.executable).with_name(program))
    # No Vault, no NATS: a service that started would fail with its own exit code, not these.
    env = {
        "PATH": "/usr/bin:/bin",
        "RUBY_VAULT_ADDR": "http://127.0.0.1:9",
        "RUBY_VAULT_ATTEMPTS": "1",
    }
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60,
                            check=False, env=env)  # fmt: skip
    assert helped.returncode == 0
    assert "RUBY_EVENT_LOOP" in helped.stdout
    own = {  # each service's own settings, listed after the runtime's
        "ruby-gateway": ("RUBY_HA_URL", "RUBY_GATEWAY_HEALTH_PORT"),
        "ruby-engine": ("RUBY_RULES_DIR", "RUBY_TIMEZONE"),
        "ruby-audit-sink": ("RUBY_AUDIT_DB",),
    }[program]
    assert all(f"  {name} " in helped.stdout for name in own), helped.stdout
    assert "takes no arguments" in helped.stdout
    refused = subprocess.run([exe, "--bogus"], capture_output=True, text=True, timeout=60,
                             check=False, env=env)  # fmt: skip
    assert refused.returncode == 2
    assert "unrecognized arguments: --bogus" in refused.stderr


def test_the_release_notes_are_the_changelogs_section_for_the_tag() -> None:
    script = str(ROOT / "images" / "changelog.py")
    done = subprocess.run(
        [sys.executable, script, f"v{VERSION}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("The first version")
    assert "### Added" in done.stdout
    assert "## [" not in done.stdout  # only this version's section
    missing = subprocess.run(
        [sys.executable, script, "v99.0.0"], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1
    assert "no section for 99.0.0" in missing.stderr
