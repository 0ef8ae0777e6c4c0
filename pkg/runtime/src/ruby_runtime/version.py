"""Ruby Core's one version, and the commit a build was made from.

`VERSION` is the project's version: every workspace member's ``pyproject.toml`` carries the
same one (a test holds them together) and ``CHANGELOG.md`` has a section for it. The commit
comes from ``RUBY_REVISION`` (a container image sets it from its build argument), else from
git when the code runs from a checkout, else it is ``unknown``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

VERSION: Final = "0.1.0"
REVISION_VARIABLE: Final = "RUBY_REVISION"
_SOURCE: Final = Path(__file__).resolve().parent


def revision(environ: Mapping[str, str] | None = None) -> str:
    """The commit this code was built from: ``RUBY_REVISION``, else git's short id of the
    checkout this file is in (``+dirty`` with uncommitted changes), else ``unknown``."""
    env = os.environ if environ is None else environ
    if given := env.get(REVISION_VARIABLE, "").strip():
        return given
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run(  # noqa: S603  # git from PATH, fixed arguments
            [git, "-C", str(_SOURCE), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(  # noqa: S603  # git from PATH, fixed arguments
            [git, "-C", str(_SOURCE), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if head and dirty else head or "unknown"


def version_line(program: str, environ: Mapping[str, str] | None = None) -> str:
    """What ``PROGRAM --version`` prints: ``ruby-engine 0.1.0 (commit 1a2b3c4d5e6f)``."""
    return f"{program} {VERSION} (commit {revision(environ)})"


class VersionAction(argparse.Action):
    """``--version`` for a parser: prints `version_line` of the parser's program and exits.
    The commit is looked up only when asked (git runs twice in a checkout: not at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: object):
        about = "print the version and the commit it was built from, and exit"
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=about)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_line(parser.prog), file=sys.stdout)
        parser.exit()
