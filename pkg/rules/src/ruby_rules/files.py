"""Reading a rule file without trusting what the path names.

A rule directory is a place anyone with write access can drop anything into: a named pipe
(reading it blocks until a writer comes), a link to ``/dev/zero`` or ``/dev/urandom`` (reading
it never ends), a directory, a file of gigabytes. `read_rule_file` reads only regular files
(a symbolic link to one is fine), never blocks and never reads more than `MAX_FILE_BYTES`;
everything else is a `FileRefused` saying what the path is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

MAX_FILE_BYTES: Final = 128 * 1024
"""The largest rule file read, in bytes (128 KiB).

The real rule files are about 4 KiB for 10 rules, so this is room for hundreds of rules in
one file (more go into more files). The bound keeps the cost of a hostile file small: PyYAML's
pure-Python parser needs about 4 s for 128 KiB of the densest YAML on a busy 2-core machine,
and every message built from a rule stays far below NATS's 1 MiB maximum payload."""

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC


class FileRefused(Exception):  # noqa: N818 - a refusal, not a failure of ours
    """The path is not a rule file that can be read; ``message`` says why, for the writer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def read_rule_file(path: Path | str) -> bytes:
    """The bytes of the regular file at ``path``; `FileRefused` for anything else.

    Never blocks (the file is opened with ``O_NONBLOCK`` and checked again with ``fstat``
    after opening, so a path swapped for a pipe in between is still refused), and reads at
    most `MAX_FILE_BYTES` + 1 bytes whatever the file claims its size is.
    """
    link = os.path.islink(path)
    try:
        before = os.stat(path)  # follows a link: the target is what would be read
    except OSError as exc:
        raise FileRefused(_unreadable(exc, link)) from None
    _check(before, link)
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        raise FileRefused(_unreadable(exc, link)) from None
    try:
        _check(os.fstat(fd), link)  # what was opened, not what was looked at
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise FileRefused(_unreadable(exc, link)) from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise FileRefused(_too_large(size, grew=True))
    return b"".join(chunks)


def shown_name(name: str) -> str:
    """``name`` as it can be printed, logged and sent: control characters and bytes that are
    not UTF-8 (which Python keeps as lone surrogates) escaped, such as ``bad\\n.yaml``."""
    if name.isprintable():
        return name
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _check(info: os.stat_result, link: bool) -> None:
    if not stat.S_ISREG(info.st_mode):
        what = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        target = f"a symbolic link to {what}" if link else what
        raise FileRefused(f"refused: {target}, not a regular file: a rule file must be one")
    if info.st_size > MAX_FILE_BYTES:
        raise FileRefused(_too_large(info.st_size, grew=False))


def _too_large(size: int, *, grew: bool) -> str:
    have = "it grew past" if grew else f"{size:,} bytes, more than"
    return (
        f"refused: {have} {MAX_FILE_BYTES:,} bytes, the most a rule file may have: "
        "split its rules into several files"
    )


def _unreadable(exc: OSError, link: bool) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"cannot read the file{' (a symbolic link)' if link else ''}: {reason}"
