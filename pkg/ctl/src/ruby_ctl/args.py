"""Argument types and environment defaults shared by rubyctl commands."""

from __future__ import annotations

import argparse
import os
import re
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Final

from ruby_ctl import pki
from ruby_natsx.subjects import DEFAULT_PREFIX, SubjectError, check_token


def port(raw: str) -> int | None:
    """A TCP port number, 0 for any free one, or ``off``."""
    if raw.lower() == "off":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number (0-65535 or 'off')")
    return value


def env_port(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return port(raw)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"rubyctl: {name}: {exc}") from None


Port = tuple[str, str, int, str]
"""A port option: flag, environment variable, default, what listens there."""
API_PORTS: Final[tuple[Port, ...]] = (
    ("--api-port", "RUBY_API_PORT", 8443, "the API: Traefik's HTTPS, 0 for any free one"),
    ("--api-http-port", "RUBY_API_HTTP_PORT", 8080, "Traefik's redirect to HTTPS, or 'off'"),
)
"""Traefik's ports, the same for `rubyctl up` and `rubyctl edge`."""


def add_ports(parser: argparse.ArgumentParser, ports: tuple[Port, ...]) -> None:
    """One option per port: a number, 0, or 'off', its default from the variable."""
    for flag, variable, default, what in ports:
        parser.add_argument(
            flag,
            type=port,
            default=env_port(variable, default),
            help=f"{what} (env {variable}; default {default})",
        )


def prefix(raw: str) -> str:
    try:
        return check_token(raw, "subject prefix")
    except SubjectError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_prefix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        type=prefix,
        default=os.environ.get("RUBY_PREFIX", DEFAULT_PREFIX),
        help=f"subject prefix of this installation (env RUBY_PREFIX; default {DEFAULT_PREFIX})",
    )


def api_hostnames(raw: str) -> tuple[str, ...]:
    try:
        return pki.hostnames(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_api_hostnames(parser: argparse.ArgumentParser) -> None:
    """``--api-hostnames``: the names Traefik's certificate carries besides localhost."""
    raw = os.environ.get("RUBY_API_HOSTNAMES", "")
    try:
        default = pki.hostnames(raw)
    except ValueError as exc:
        raise SystemExit(f"rubyctl: RUBY_API_HOSTNAMES: {exc}") from None
    parser.add_argument(
        "--api-hostnames",
        metavar="NAMES",
        type=api_hostnames,
        default=default,
        help="comma-separated host names and IP addresses clients reach the API by, put in "
        "Traefik's certificate besides localhost and 127.0.0.1 (env RUBY_API_HOSTNAMES; "
        "default none); a name added issues the certificate again",
    )


def add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("RUBY_STATE_DIR", ".ruby")),
        help="where local state lives (env RUBY_STATE_DIR; default .ruby)",
    )


HELP_WIDTH = 78
"""Where `add_verb` wraps a verb's description."""


def add_verb(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A sub-command with a wrapped description and an ``examples:`` epilog.

    Paragraphs are wrapped; indented lines (formats, examples) are kept as written.
    """
    lines = [
        line if line.startswith(" ") else textwrap.fill(line, HELP_WIDTH)
        for line in description.splitlines()
    ]
    return verbs.add_parser(
        name,
        help=help_text,
        description="\n".join(lines),
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(raw: str) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``7d``."""
    match = _DURATION.fullmatch(raw.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a duration like 90s, 10m, 2h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
