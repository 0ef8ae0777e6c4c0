"""The gateway service: the bridge, the command executor and health, under one identity.

Settings (besides the runtime's ``RUBY_*``):

| variable | default | meaning |
|---|---|---|
| ``RUBY_HA_URL`` | ``ws://127.0.0.1:8123/api/websocket`` | Home Assistant's WebSocket API |
| ``RUBY_GATEWAY_HEALTH_PORT`` | ``8081`` | /healthz and /readyz on 127.0.0.1 (0: any free port) |
| ``RUBY_GATEWAY_API_PORT`` | ``off`` | the API, HTTPS on 127.0.0.1 for Traefik (0: any port) |
| ``RUBY_GATEWAY_API_CERT`` | ``<state>/pki/gateway-api.pem`` | the API's certificate |
| ``RUBY_GATEWAY_API_KEY`` | ``<state>/pki/gateway-api.key`` | the API's private key |
| ``RUBY_GATEWAY_WS_SEND_TIMEOUT`` | ``10`` | a stalled /api/v1/ws client is cut off after (s) |

The HA access token is read from Vault, field ``token`` of ``<prefix>/gateway/ha``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from nats.aio.client import Client

from ruby_gateway.api.edge import EdgeAuth
from ruby_gateway.api.server import ApiServer, Handlers, TlsFiles
from ruby_gateway.api.stream import SEND_TIMEOUT
from ruby_gateway.api.tokens import TokenBook
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.health import Health
from ruby_gateway.projection import load_projection
from ruby_gateway.wiring import wire
from ruby_natsx.audit import publish_records, secrets_read
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import (
    API_TOKENS,
    GATEWAY,
    IDEMPOTENCY,
    PROJECTION,
    STATUS,
    topology,
)
from ruby_runtime.errors import SettingsError
from ruby_runtime.logging import get_logger
from ruby_runtime.secret import Secret
from ruby_runtime.settings import ServiceSettings
from ruby_runtime.startup import SecretRead, Started
from ruby_runtime.vault import HA_TOKEN_FIELD, VaultSession, ha_token_path

IDENTITY = GATEWAY
DEFAULT_HA_URL = "ws://127.0.0.1:8123/api/websocket"
SETTINGS: Final[Mapping[str, str]] = {
    "RUBY_HA_URL": f"Home Assistant's WebSocket API (default {DEFAULT_HA_URL})",
    "RUBY_GATEWAY_HEALTH_PORT": "/healthz and /readyz on 127.0.0.1, 0 for any free port "
    "(default 8081)",
    "RUBY_GATEWAY_API_PORT": "the API, HTTPS on 127.0.0.1 for Traefik's edge only, 0 for any "
    "free port, or off (default off; rubyctl up turns it on)",
    "RUBY_GATEWAY_API_CERT": "the API's certificate (default <state>/pki/gateway-api.pem)",
    "RUBY_GATEWAY_API_KEY": "the API's private key (default <state>/pki/gateway-api.key)",
    "RUBY_GATEWAY_WS_SEND_TIMEOUT": "seconds a client of /api/v1/ws may leave a page unread "
    f"before it is cut off (default {SEND_TIMEOUT:g})",
}
"""The gateway's own variables (``--help`` lists them after the runtime's)."""

log = get_logger("ruby_gateway.service")


def fetch_ha_token(settings: ServiceSettings) -> Secret:
    with VaultSession.login(settings.vault, settings.identity) as vault:
        return vault.read(ha_token_path(settings.prefix), HA_TOKEN_FIELD)


def _port(variable: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SettingsError(f"{variable}: {raw!r} is not a port number")
    return port


def health_port() -> int:
    return _port("RUBY_GATEWAY_HEALTH_PORT", os.environ.get("RUBY_GATEWAY_HEALTH_PORT", "8081"))


def stream_send_timeout() -> float:
    raw = os.environ.get("RUBY_GATEWAY_WS_SEND_TIMEOUT", "").strip()
    if not raw:
        return SEND_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise SettingsError(f"RUBY_GATEWAY_WS_SEND_TIMEOUT: {raw!r} is not 0 < seconds <= 3600")
    return seconds


def api_listener(settings: ServiceSettings) -> tuple[int, TlsFiles] | None:
    """The API's port and TLS files, or None when ``RUBY_GATEWAY_API_PORT`` is ``off``."""
    raw = os.environ.get("RUBY_GATEWAY_API_PORT", "off").strip()
    if raw.lower() == "off":
        return None
    pki = settings.state_dir / "pki"
    files = {}
    for variable, default in (
        ("RUBY_GATEWAY_API_CERT", pki / "gateway-api.pem"),
        ("RUBY_GATEWAY_API_KEY", pki / "gateway-api.key"),
    ):
        path = Path(os.environ.get(variable) or default)
        if not path.is_file():
            raise SettingsError(f"{variable}: {str(path)!r} is not a file (rubyctl bootstrap)")
        files[variable] = path
    tls = TlsFiles(
        files["RUBY_GATEWAY_API_CERT"], files["RUBY_GATEWAY_API_KEY"], settings.nats_ca_file
    )
    return _port("RUBY_GATEWAY_API_PORT", raw), tls


async def serve(started: Started[Client]) -> int:
    """Run until SIGTERM or SIGINT; then stop pulling, finish in-flight work, exit 0."""
    settings, nc = started.settings, started.nats
    subjects = Subjects(settings.prefix)
    topo = topology(subjects)
    port = health_port()
    api = api_listener(settings)
    token = await asyncio.to_thread(fetch_ha_token, settings)
    ha_token = SecretRead(
        f"{settings.vault.mount}/{ha_token_path(settings.prefix)}",
        HA_TOKEN_FIELD,
        datetime.now(UTC),
    )
    await publish_records(nc, secrets_read(subjects, IDENTITY, (*started.secrets_read, ha_token)))
    projection_bucket = topo.bucket(PROJECTION).bucket
    projection = await load_projection(nc, projection_bucket)
    log.info("projection loaded", entities=len(projection))
    ledger = await nc.jetstream().key_value(topo.bucket(IDEMPOTENCY).bucket)
    bridge, runner = wire(
        nc,
        subjects,
        BridgeConfig(url=os.environ.get("RUBY_HA_URL", DEFAULT_HA_URL), token=token),
        ledger,
        owner=f"gateway-{os.getpid()}-{secrets.token_hex(4)}",  # unique even as pid 1
        projection=projection,
    )
    health = Health(
        lambda: bridge.status,
        nc,
        status_subject=f"$KV.{topo.bucket(STATUS).bucket}.{IDENTITY}",
        port=port,
    )
    await health.start()
    book = TokenBook()
    server: ApiServer | None = None
    if api is not None:
        await book.follow(nc, topo.bucket(API_TOKENS).bucket)
        edge = EdgeAuth(book, nc, subjects)
        handlers = Handlers.on(
            nc, subjects, lambda: bridge.projection, ledger, send_timeout=stream_send_timeout()
        )
        server = ApiServer(handlers, edge, api[1], port=api[0])
        await server.start()
        log.info("api listening", api=f"https://127.0.0.1:{server.port}", known=len(book))
    log.info("gateway running", health=f"http://127.0.0.1:{health.port}/readyz")
    loop = asyncio.get_running_loop()

    def stop() -> None:
        bridge.stop()
        runner.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(bridge.run(), runner.run())
    finally:
        if server is not None:
            await server.close()
        await book.close()
        await health.close()
    log.info("gateway stopped")
    return 0
