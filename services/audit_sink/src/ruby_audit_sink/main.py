"""Entry point of the audit_sink service."""

import sys

from nats.aio.client import Client

from ruby_natsx.connection import connect_service
from ruby_runtime.logging import get_logger
from ruby_runtime.startup import Started, run_service

IDENTITY = "audit_sink"


async def serve(service: Started[Client]) -> int:
    """Not implemented yet: the start-up (settings, Vault, NATS) ran; say so, exit non-zero."""
    get_logger("ruby_audit_sink").error(
        "started, but the audit_sink is not implemented yet (see the open issues)"
    )
    return 1


def main() -> int:
    """Start as the audit_sink identity (``ruby_runtime.startup``); exit with its exit code."""
    return run_service(IDENTITY, serve, connect=connect_service)


if __name__ == "__main__":
    sys.exit(main())
