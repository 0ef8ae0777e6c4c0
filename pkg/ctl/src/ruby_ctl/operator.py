"""Connecting as the operator identity (``rubyctl``): the same start-up path as a service.

Settings come from the ``RUBY_*`` variables (``ruby_runtime.settings``); the operator logs in
to Vault with its own AppRole, reads its NKEY seed, revokes the token, and connects to NATS
over TLS. Its permissions (``ruby_natsx.permissions``) let it apply the topology, read the
DLQ and AUDIT and replay dead letters, but not change, delete or purge the audit trail, nor
touch the audit sink's durable (ADR-0005).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping

from nats.aio.client import Client

from ruby_natsx.connection import NatsRefusedError, NatsSettings, connect
from ruby_natsx.permissions import OPERATOR
from ruby_runtime.errors import NatsRefusedError as RuntimeNatsRefusedError
from ruby_runtime.errors import StartupError
from ruby_runtime.settings import ServiceSettings
from ruby_runtime.vault import fetch_nats_seed


def operator_settings(environ: Mapping[str, str] | None = None) -> ServiceSettings:
    """The operator's settings from ``environ`` (default ``os.environ``)."""
    return ServiceSettings.from_env(OPERATOR, environ)


async def connect_operator(settings: ServiceSettings, name: str = "rubyctl") -> Client:
    """Log in to Vault as the operator and connect to NATS with its NKEY over TLS.

    Raises the ``ruby_runtime.errors`` of a failed Vault step, or
    ``ruby_natsx.connection.NatsRefusedError``.
    """
    seed = await asyncio.to_thread(fetch_nats_seed, settings)
    return await connect(
        NatsSettings(
            url=settings.nats_url,
            name=name,
            ca_file=settings.nats_ca_file,
            nkey_seed=seed.reveal(),
            identity=OPERATOR,
        )
    )


CONNECT_TIMEOUT = 5.0
"""Seconds a CLI command waits for NATS before saying the stack is not running."""


async def connect_cli(nats_url: str | None) -> Client:
    """As the operator (Vault AppRole, NKEY, TLS), or anonymously to ``nats_url`` (an open
    server, for tests and tinkering), within ``CONNECT_TIMEOUT``.

    Raises ``TimeoutError``, or the ``ruby_runtime.errors.StartupError`` of a failed step
    (a refused connection is ``ruby_runtime.errors.NatsRefusedError``).
    """
    async with asyncio.timeout(CONNECT_TIMEOUT):
        if nats_url:
            return await connect(NatsSettings(url=nats_url, name="rubyctl"))
        try:
            return await connect_operator(operator_settings())
        except NatsRefusedError as exc:
            raise RuntimeNatsRefusedError(str(exc)) from exc


def run_connected(
    command: str, nats_url: str | None, body: Callable[[Client], Awaitable[int]]
) -> int:
    """Connect (`connect_cli`), run ``body``, drain; return its exit code. When NATS cannot
    be reached, say why on stderr as ``rubyctl <command>: ...`` and return 2 (or the start-up
    error's own exit code)."""

    async def go() -> int:
        try:
            nc = await connect_cli(nats_url)
        except TimeoutError:
            where = nats_url or "NATS"
            print(
                f"rubyctl {command}: {where} did not answer within {CONNECT_TIMEOUT}s "
                "(is `make run` running?)",
                file=sys.stderr,
            )
            return 2
        except StartupError as exc:
            print(f"rubyctl {command}: {exc}", file=sys.stderr)
            return exc.exit_code
        try:
            return await body(nc)
        finally:
            await nc.drain()

    return asyncio.run(go())
