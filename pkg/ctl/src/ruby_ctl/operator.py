"""Connecting as the operator identity (``rubyctl``): the same start-up path as a service.

Settings come from the ``RUBY_*`` variables (``ruby_runtime.settings``); the operator logs in
to Vault with its own AppRole, reads its NKEY seed, revokes the token, and connects to NATS
over TLS. Its permissions (``ruby_natsx.permissions``) let it apply the topology, read the
DLQ and AUDIT and replay dead letters, but not delete or purge the audit trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from nats.aio.client import Client

from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.permissions import OPERATOR
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
