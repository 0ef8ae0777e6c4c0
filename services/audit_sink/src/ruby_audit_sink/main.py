"""Entry point of the audit_sink service."""

import sys

from ruby_audit_sink.service import SETTINGS, serve
from ruby_audit_sink.sink import IDENTITY
from ruby_natsx.connection import connect_service
from ruby_runtime.startup import run_service


def main() -> int:
    """Start as the audit_sink identity (``ruby_runtime.startup``); exit with its exit code."""
    return run_service(
        IDENTITY, serve, connect=connect_service, argv=sys.argv[1:], own_settings=SETTINGS
    )


if __name__ == "__main__":
    sys.exit(main())
