"""Print the section of CHANGELOG.md for one version (the release notes of its tag).

usage: python3 images/changelog.py 0.1.0  (exit 1, saying so, if the changelog has none)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"


def section(text: str, version: str) -> str | None:
    """The lines under ``## [version]`` up to the next ``## `` heading, stripped."""
    match = re.search(rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1).strip() if match else None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    version = argv[0].removeprefix("v")
    found = section(CHANGELOG.read_text(encoding="utf-8"), version)
    if not found:
        print(f"CHANGELOG.md has no section for {version}", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
