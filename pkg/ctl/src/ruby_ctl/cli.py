"""``rubyctl``: the operator CLI of Ruby Core.

Each command lives in its own module with ``register(commands)`` that adds its subparser and
sets ``handler`` to a function taking the parsed arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ruby_ctl import audit, bootstrap, dlq, edge_cli, live, rules, secret, token, up_cli
from ruby_runtime.logging import configure_logging
from ruby_runtime.version import VersionAction

COMMANDS = (up_cli, live, edge_cli, bootstrap, secret, token, dlq, rules, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rubyctl",
        description="Operate a Ruby Core installation: run it locally, inspect and repair it.",
    )
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Human output goes to stdout; logs go to stderr, quiet unless RUBY_LOG_LEVEL asks.
    configure_logging(
        "rubyctl", level=os.environ.get("RUBY_LOG_LEVEL", "WARNING"), stream=sys.stderr
    )
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
