"""How every service starts: settings, then logging, then Vault, then NATS over TLS + NKEY.

A service's ``main`` is one call::

    from ruby_natsx.connection import connect_service

    def main() -> int:
        return run_service("gateway", serve, connect=connect_service)

``run_service`` reads the ``RUBY_*`` settings, configures logging, logs in to Vault with the
service's AppRole, reads its NKEY seed (and revokes the Vault token), connects to NATS as the
service, runs ``serve`` and ends the connection (`close_nats`: drained when connected,
closed otherwise, within a bound, so a lost nats-server never turns a clean stop into a
crash). A failure to start is one log line, one line on stderr and a distinct exit code
(``ruby_runtime.errors``). The NATS client is passed in (``connect``) so that this package
does not depend on NATS: ``ruby_natsx`` provides it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TextIO, TypeVar

from ruby_runtime.errors import NatsRefusedError, SettingsError, StartupError
from ruby_runtime.health import STALE_AFTER, health_file, heartbeat
from ruby_runtime.health import check as check_health
from ruby_runtime.logging import configure_logging, get_logger
from ruby_runtime.redaction import scrub
from ruby_runtime.settings import (
    ENVIRONMENT,
    ServiceSettings,
    event_loop_factory,
)
from ruby_runtime.vault import NATS_SEED_FIELD, fetch_nats_seed, nats_seed_path
from ruby_runtime.version import VersionAction

__all__ = [
    "DRAIN_WITHIN",
    "Connection",
    "NatsConnector",
    "SecretRead",
    "Started",
    "close_nats",
    "run_service",
    "start_service",
]

DRAIN_WITHIN = 10.0
"""Seconds a service's NATS connection has to drain at the end before it is closed instead."""


class Connection(Protocol):
    """What the runtime needs of a NATS connection: to end it, drained if it can be."""

    @property
    def is_connected(self) -> bool: ...

    @property
    def is_closed(self) -> bool: ...

    async def drain(self) -> None: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=Connection)
C_co = TypeVar("C_co", bound=Connection, covariant=True)


class NatsConnector(Protocol[C_co]):
    """Connects as ``identity`` over TLS (trusting ``ca_file``) with the NKEY ``seed``."""

    def __call__(
        self, *, url: str, name: str, identity: str, ca_file: Path, seed: str
    ) -> Awaitable[C_co]: ...


@dataclass(frozen=True)
class SecretRead:
    """A secret read from Vault at start-up (where, not what): to be audited once connected."""

    path: str
    field: str
    at: datetime


@dataclass(frozen=True)
class Started(Generic[C]):
    """A started service: its settings and its NATS connection (holds no secret)."""

    settings: ServiceSettings
    nats: C
    secrets_read: tuple[SecretRead, ...] = ()
    """The secrets start-up read from Vault; the service audits them (``secret.read``)."""


async def start_service(
    identity: str,
    connect: NatsConnector[C],
    *,
    environ: Mapping[str, str] | None = None,
    log_stream: TextIO | None = None,
) -> Started[C]:
    """Settings, logging, Vault, NATS; raise the ``StartupError`` of the first step that fails.

    Blocks only in a worker thread (Vault); cancelling it leaves no connection open.
    """
    try:
        settings = ServiceSettings.from_env(identity, environ)
    except SettingsError:
        configure_logging(identity, stream=log_stream)
        raise
    configure_logging(identity, level=settings.log_level, stream=log_stream)
    log = get_logger("ruby_runtime.startup")
    log.info(
        "starting",
        identity=identity,
        prefix=settings.prefix,
        nats=settings.nats_url,
        vault=settings.vault.addr,
    )
    if not settings.nats_ca_file.is_file():
        raise SettingsError(
            f"RUBY_NATS_CA_FILE: no CA certificate at {settings.nats_ca_file}: "
            "run `rubyctl bootstrap`, or point RUBY_NATS_CA_FILE at the CA of nats-server"
        )
    seed = await asyncio.to_thread(fetch_nats_seed, settings)
    read = SecretRead(
        f"{settings.vault.mount}/{nats_seed_path(settings.prefix, identity)}",
        NATS_SEED_FIELD,
        datetime.now(UTC),
    )
    try:
        nats = await connect(
            url=settings.nats_url,
            name=f"ruby-{identity}",
            identity=identity,
            ca_file=settings.nats_ca_file,
            seed=seed.reveal(),
        )
    except Exception as exc:
        raise NatsRefusedError(
            f"NATS at {settings.nats_url} refused {identity!r}: {scrub(str(exc))}"
        ) from None
    finally:
        del seed
    log.info("nats connected", identity=identity, nats=settings.nats_url)
    return Started(settings, nats, (read,))


def service_parser(
    program: str, identity: str, own: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """A service's command line: no arguments but ``--help`` and ``--version``; its settings
    are the ``RUBY_*`` variables, listed in the help: the runtime's (`ENVIRONMENT`), then the
    service's ``own``."""
    every = {**ENVIRONMENT, **(own or {})}
    settings = "\n".join(f"  {name:27} {meaning}" for name, meaning in every.items())
    about = (
        f"The Ruby Core {identity.replace('_', ' ')} service. It takes no arguments: the RUBY_* "
        "environment variables below set it up (every one optional; the defaults are the "
        "local stack of `rubyctl up`), and it runs until SIGTERM or Ctrl-C."
    )
    parser = argparse.ArgumentParser(
        prog=program,
        description=textwrap.fill(about, 88),
        epilog=f"environment:\n{settings}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 if the running service's heartbeat (<RUBY_STATE_DIR>/health/<identity>) "
        f"is at most {STALE_AFTER:.0f} s old, 1 if not: the images' HEALTHCHECK",
    )
    return parser


def run_service(
    identity: str,
    body: Callable[[Started[C]], Awaitable[int]],
    *,
    connect: NatsConnector[C],
    environ: Mapping[str, str] | None = None,
    log_stream: TextIO | None = None,
    stderr: TextIO | None = None,
    argv: Sequence[str] | None = None,
    program: str | None = None,
    own_settings: Mapping[str, str] | None = None,
) -> int:
    """A service's whole ``main``: start, run ``body``, drain NATS; return the exit code.

    With ``argv`` (a service's own command line), ``--help`` and ``--version`` answer and
    return 0, anything else is a usage error (2), before anything starts. A ``StartupError``
    is logged once, printed on ``stderr`` as ``<identity>: cannot start: <message>`` and
    returned as its ``exit_code``. Ctrl-C returns 130. Anything else ``body`` raises
    propagates.
    """
    if argv is not None:
        name = program or f"ruby-{identity.replace('_', '-')}"
        parser = service_parser(name, identity, own_settings)
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help, --version or a usage error: said, nothing started
            return int(done.code or 0)
        if args.healthcheck:
            try:
                state_dir = ServiceSettings.from_env(identity, environ).state_dir
                problem = check_health(health_file(state_dir, identity))
            except SettingsError as exc:
                problem = str(exc)
            print(f"{identity}: {problem or 'healthy'}", file=stderr or sys.stderr)
            return 1 if problem else 0

    async def main() -> int:
        started = await start_service(identity, connect, environ=environ, log_stream=log_stream)
        beat = asyncio.create_task(
            heartbeat(
                health_file(started.settings.state_dir, identity),
                lambda: started.nats.is_connected,
            ),
            name="heartbeat",
        )
        try:
            return await body(started)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await close_nats(started.nats)

    try:
        with asyncio.Runner(loop_factory=event_loop_factory(environ)) as runner:
            return runner.run(main())
    except StartupError as exc:
        message = scrub(str(exc))
        get_logger("ruby_runtime.startup").error(
            "cannot start", identity=identity, reason=message, exit_code=exc.exit_code
        )
        print(f"{identity}: cannot start: {message}", file=stderr or sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


async def close_nats(nats: Connection, within: float = DRAIN_WITHIN) -> None:
    """End the connection whatever its state; never raises for that state.

    Connected: drained (subscriptions finish what they hold, pending publishes are flushed),
    for ``within`` seconds at most. Reconnecting, or a drain that fails or runs out of time
    (the server went away meanwhile): closed, dropping what is unsent, which is what a lost
    server means anyway. Already closed: nothing to do.
    """
    log = get_logger("ruby_runtime.startup")
    if nats.is_closed:
        return
    if nats.is_connected:
        try:
            await asyncio.wait_for(nats.drain(), within)
        except Exception as exc:  # any failure to drain ends in a close below
            log.warning("nats drain failed; closing", reason=scrub(f"{type(exc).__name__} {exc}"))
        else:
            return
    else:
        log.info("nats not connected at stop; closing without draining")
    try:
        await asyncio.wait_for(nats.close(), within)
    except Exception as exc:  # the process is ending: say so and go on
        log.warning("nats close failed", reason=scrub(f"{type(exc).__name__} {exc}"))
