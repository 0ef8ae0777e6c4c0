"""Writing local state files atomically, private ones readable by their owner only.

A private file is created 0600 from its first byte (never written then chmod-ed), in a
directory that is 0700, and renamed into place, so a crash leaves the old file or the new one,
never half of either.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
PUBLIC_FILE = 0o644


def write_private(path: Path, data: bytes | str) -> bool:
    """Write ``data`` to ``path`` with mode 0600; return False if it already held exactly that."""
    return _write(path, data, PRIVATE_FILE, dir_mode=PRIVATE_DIR)


def write_public(path: Path, data: bytes | str) -> bool:
    """Write ``data`` to ``path`` with mode 0644; return False if it already held exactly that."""
    return _write(path, data, PUBLIC_FILE, dir_mode=None)


def read_text(path: Path) -> str | None:
    """The file's text, stripped, or None when it does not exist or is empty."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _write(path: Path, data: bytes | str, mode: int, *, dir_mode: int | None) -> bool:
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.read_bytes() == raw and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    if dir_mode is not None:
        path.parent.chmod(dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
