"""Connecting to NATS the one way every Ruby Core process does.

Reconnects forever (a service outlives a nats-server restart), names the connection after the
service, and logs connection state changes through the standard logger, which the runtime
routes into structured logs.

Secure connections (ADR-0005) verify the server's certificate against the installation's CA
(TLS 1.3, hostname checked), sign the server's nonce with the identity's NKEY seed, and take
replies on the identity's own inbox, ``_INBOX_<identity>``, the only one its permissions let
it read. Without a CA and a seed the connection is plain and anonymous, as the test servers of
``ruby_natsx.testing`` expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client

from ruby_natsx.credentials import is_user_seed
from ruby_natsx.permissions import inbox_prefix

log = logging.getLogger("ruby_natsx.connection")

DEFAULT_INBOX: bytes = b"_INBOX"

_RECONNECTED: weakref.WeakKeyDictionary[Client, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def when_reconnected(client: Client, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` each time ``client`` (made by `connect`) has reconnected, at once,
    so that whoever lost server-side state with the old connection (pull requests) can ask
    again without waiting for a timeout. Returns the function that stops the calls."""
    callbacks = _RECONNECTED.setdefault(client, [])
    callbacks.append(callback)

    def forget() -> None:
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)

    return forget


class _TlsCloseNoise(logging.Filter):
    """asyncio warns, each time nats-py closes a TLS connection, that "returning true from
    eof_received() has no effect when using ssl": harmless, and noise in every service log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


_TLS_CLOSE_NOISE = _TlsCloseNoise()


class NatsRefusedError(RuntimeError):
    """The first connection was refused for good: TLS verification or credentials failed.

    Network failures are not this: they are retried until the server answers.
    """


@dataclass(frozen=True)
class NatsSettings:
    """Where and how to connect.

    ``ca_file`` turns on TLS (required, verified against that CA); ``nkey_seed`` authenticates
    as an NKEY user; ``identity`` names the inbox (``_INBOX_<identity>``). The seed never
    appears in ``repr``/``str``.
    """

    url: str
    name: str
    connect_timeout: float = 5.0
    reconnect_wait: float = 0.5
    ca_file: Path | None = None
    nkey_seed: str | None = None
    identity: str | None = None

    def __post_init__(self) -> None:
        if self.nkey_seed is not None and not is_user_seed(self.nkey_seed):
            raise ValueError(f"NATS credentials of {self.name!r}: not an NKEY user seed")
        if self.identity is not None:
            inbox_prefix(self.identity)  # checks the token

    def __repr__(self) -> str:
        seed = "None" if self.nkey_seed is None else "'[REDACTED]'"
        return (
            f"NatsSettings(url={self.url!r}, name={self.name!r}, ca_file={self.ca_file!r}, "
            f"identity={self.identity!r}, nkey_seed={seed})"
        )

    __str__ = __repr__


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file``, checks the hostname, and needs TLS 1.3."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


async def connect(settings: NatsSettings) -> Client:
    """Connect; afterwards reconnect forever.

    The first connection is retried while the server is unreachable. If the server refuses it
    for good (TLS verification failed, unknown or wrong NKEY), ``NatsRefusedError`` is raised
    instead of retrying a failure that cannot heal by itself. Cancelling the call closes the
    half-made connection.
    """
    refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    connecting = True

    async def on_error(exc: Exception) -> None:
        if connecting and (refused.done() or _is_refusal(exc)):
            if not refused.done():
                refused.set_result(exc)
            return  # reported once, by the NatsRefusedError raised below
        log.warning("nats error: %s", exc)

    async def on_disconnected() -> None:
        log.info("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected")
        for callback in list(_RECONNECTED.get(client, ())):
            try:
                callback()
            except Exception:
                log.exception("a reconnect callback failed")

    client = Client()
    url = settings.url
    tls: ssl.SSLContext | None = None
    if settings.ca_file is not None:
        tls = tls_context(settings.ca_file)
        logging.getLogger("asyncio").addFilter(_TLS_CLOSE_NOISE)  # once: filters are a set
        if url.startswith("nats://"):
            url = "tls://" + url.removeprefix("nats://")  # never fall back to plaintext
    attempt = asyncio.ensure_future(
        client.connect(
            url,
            name=settings.name,
            # nats-py annotates these seconds as int; it takes floats (asyncio timeouts).
            connect_timeout=settings.connect_timeout,  # type: ignore[arg-type]
            reconnect_time_wait=settings.reconnect_wait,  # type: ignore[arg-type]
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            tls=tls,
            nkeys_seed_str=settings.nkey_seed,
            inbox_prefix=(
                inbox_prefix(settings.identity).encode() if settings.identity else DEFAULT_INBOX
            ),
        )
    )
    try:
        either: set[asyncio.Future[Any]] = {attempt, refused}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if attempt in done:
            attempt.result()  # re-raises what made the attempt fail
            connecting = False
            return client
    except BaseException:
        await _abandon(attempt, client)
        raise
    await _abandon(attempt, client)
    raise NatsRefusedError(
        f"{settings.url} refused the connection of {settings.name!r}: {_describe(refused.result())}"
    )


def _is_refusal(exc: BaseException) -> bool:
    if isinstance(exc, nats.errors.AuthorizationError | ssl.SSLError):
        return True
    return "authorization violation" in str(exc).lower() or "tls required" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's TLS certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    return "authorization violation (unknown or wrong NKEY, or no credentials)"


async def _abandon(attempt: asyncio.Future[None], client: Client) -> None:
    """Stop the connection attempt and close the client; a caller's cancellation still wins."""
    attempt.cancel()
    try:
        await asyncio.wait({attempt})
        if not attempt.cancelled():
            attempt.exception()  # retrieved: the refusal is what gets reported
    finally:
        with contextlib.suppress(Exception):  # closing a half-made connection may fail
            await client.close()


async def connect_service(
    *, url: str, name: str, identity: str, ca_file: Path, seed: str
) -> Client:
    """Connect as ``identity`` over TLS with its NKEY seed (the runtime's NATS connector)."""
    return await connect(
        NatsSettings(url=url, name=name, ca_file=ca_file, nkey_seed=seed, identity=identity)
    )


async def flushed(client: Client) -> None:
    """Return once the server has processed everything this client queued before the call.

    ``Client.flush`` alone does not promise that in nats-py 2.16: it writes its PING straight to
    the socket, ahead of commands still waiting for the flusher task (a SUB just made, say), so
    its PONG can come back before the server has seen them, and a message another connection
    publishes next is not delivered. The first flush hands that queue to the flusher, which
    writes it before any reply can be read; the second PING follows it on the wire. Use this,
    not ``flush``, wherever a subscription must be in place before someone else publishes.
    """
    await client.flush()
    await client.flush()
