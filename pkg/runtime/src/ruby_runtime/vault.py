"""Secrets from Vault (OpenBao locally) by AppRole, with one clear error per failure (ADR-0015).

Layout, shared with ``rubyctl bootstrap`` which writes it: a KV v2 mount (``ruby``), one
folder per identity of an installation, ``<prefix>/<identity>/...``, readable only by that
identity's policy. The NKEY seed is the ``seed`` field of ``<prefix>/<identity>/nats``.

``VaultSession.login`` reads the AppRole role id and secret id from their files, checks that
Vault is reachable (retrying a bounded number of times with jittered exponential backoff) and
unsealed, and logs in. ``read`` returns a ``Secret``. Each failure is its own
``ruby_runtime.errors`` class with its own exit code; messages never contain a secret, and the
session's token never appears in a ``repr``. The calls block (hvac is synchronous): call them
from a thread in async code, as ``ruby_runtime.startup`` does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

import hvac
import hvac.exceptions
import requests

from ruby_runtime.errors import (
    SecretMissingError,
    SettingsError,
    VaultError,
    VaultLoginRefusedError,
    VaultPermissionDeniedError,
    VaultSealedError,
    VaultUnreachableError,
)
from ruby_runtime.logging import get_logger
from ruby_runtime.redaction import scrub
from ruby_runtime.secret import Secret
from ruby_runtime.settings import ServiceSettings, VaultSettings

__all__ = [
    "NATS_SEED_FIELD",
    "AppRoleLogin",
    "VaultSession",
    "backoff_delays",
    "fetch_nats_seed",
    "identity_path",
    "nats_seed_path",
]

NATS_SEED_FIELD: Final = "seed"
BACKOFF_BASE: Final = 0.2
BACKOFF_CAP: Final = 2.0

_T = TypeVar("_T")
_UNREACHABLE: Final = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)

log = get_logger("ruby_runtime.vault")


def identity_path(prefix: str, identity: str) -> str:
    """The folder (under the KV mount) that holds one identity's secrets, and only its."""
    return f"{prefix}/{identity}"


HA_TOKEN_FIELD: Final = "token"  # noqa: S105 - the name of a Vault field, not a secret


def ha_token_path(prefix: str) -> str:
    """Where the gateway's Home Assistant access token lives (field ``token``)."""
    return f"{identity_path(prefix, 'gateway')}/ha"


def nats_seed_path(prefix: str, identity: str) -> str:
    """Where an identity's NKEY seed lives (field ``seed``)."""
    return f"{identity_path(prefix, identity)}/nats"


def backoff_delays(
    attempts: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: Callable[[], float] = random.random,
) -> list[float]:
    """The waits between ``attempts`` tries: exponential, capped, half of each one jittered.

    Wait ``i`` lies in ``[d/2, d]`` with ``d = min(cap, base * 2**i)``, so concurrent services
    do not retry in step, and the total is bounded by the sum of the ``d``.
    """
    delays = []
    for i in range(max(0, attempts - 1)):
        d = min(cap, base * 2**i)
        delays.append(d / 2 + rng() * d / 2)
    return delays


@dataclass(frozen=True)
class AppRoleLogin:
    """An AppRole's role id and secret id, as read from their files."""

    role_id: Secret
    secret_id: Secret

    @classmethod
    def from_files(cls, role_id_file: Path, secret_id_file: Path) -> AppRoleLogin:
        """Read both files; ``SettingsError`` naming the file if one is missing or empty."""
        return cls(
            role_id=Secret(_read_credential(role_id_file, "role id"), "AppRole role id"),
            secret_id=Secret(_read_credential(secret_id_file, "secret id"), "AppRole secret id"),
        )


class VaultSession:
    """One identity logged in to Vault. Use it as a context manager: its token is revoked
    on exit. Not thread-safe: one thread at a time."""

    def __init__(self, client: hvac.Client, settings: VaultSettings, identity: str) -> None:
        self._client = client
        self._settings = settings
        self.identity = identity

    @classmethod
    def login(
        cls,
        settings: VaultSettings,
        identity: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> VaultSession:
        """Log in as ``identity`` with the AppRole credentials named in ``settings``.

        Raises ``SettingsError`` (credential file missing), ``VaultUnreachableError`` (after
        ``settings.attempts`` tries), ``VaultSealedError``, ``VaultLoginRefusedError`` or
        ``VaultError`` (anything else Vault answers).
        """
        creds = AppRoleLogin.from_files(settings.role_id_file, settings.secret_id_file)
        client = hvac.Client(
            url=settings.addr,
            verify=str(settings.ca_file) if settings.ca_file else True,
            timeout=settings.timeout,
        )
        session = cls(client, settings, identity)
        try:
            status = session._call("read the seal status", client.sys.read_seal_status, sleep)
            _require_unsealed(settings.addr, status)
            session._login(creds, sleep)
        except BaseException:
            client.adapter.close()
            raise
        log.info("vault login", identity=identity, vault=settings.addr)
        return session

    def _login(self, creds: AppRoleLogin, sleep: Callable[[float], None]) -> None:
        settings, identity, client = self._settings, self.identity, self._client
        try:
            self._call(
                f"log in as {identity}",
                lambda: client.auth.approle.login(
                    role_id=creds.role_id.reveal(), secret_id=creds.secret_id.reveal()
                ),
                sleep,
            )
        except (
            hvac.exceptions.InvalidRequest,
            hvac.exceptions.Forbidden,
            hvac.exceptions.Unauthorized,
        ):
            raise VaultLoginRefusedError(
                f"Vault at {settings.addr} refused the AppRole login of {identity!r} (role id "
                f"from {settings.role_id_file}, secret id from {settings.secret_id_file}): "
                "unknown role or invalid secret id. Re-issue them with `rubyctl bootstrap`."
            ) from None

    def read(self, path: str, field: str) -> Secret:
        """The string ``field`` of the KV v2 secret at ``path`` (under the mount).

        Raises ``VaultPermissionDeniedError`` when the identity's policy does not cover
        ``path``, ``SecretMissingError`` when nothing (or no such field) is there.
        """
        where = f"{self._settings.mount}/{path}"
        try:
            response = self._call(
                f"read {where}",
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self._settings.mount, raise_on_deleted_version=True
                ),
                time.sleep,
            )
        except hvac.exceptions.Forbidden:
            raise VaultPermissionDeniedError(
                f"Vault denied {self.identity!r} reading {where}: its policy covers only its "
                "own secrets (check RUBY_PREFIX and which AppRole credentials it was given)"
            ) from None
        except hvac.exceptions.InvalidPath:
            raise SecretMissingError(
                f"no secret at {where} for {self.identity!r}: run `rubyctl bootstrap`"
            ) from None
        value = ((response or {}).get("data") or {}).get("data", {}).get(field)
        if not isinstance(value, str) or not value:
            raise SecretMissingError(
                f"the secret at {where} has no field {field!r}: run `rubyctl bootstrap`"
            )
        log.info("secret read", identity=self.identity, path=where, field=field)
        return Secret(value, f"{field} of {where}")

    def close(self) -> None:
        """Revoke this session's token (best effort: it expires by itself anyway)."""
        try:
            self._client.auth.token.revoke_self()
        except (hvac.exceptions.VaultError, *_UNREACHABLE) as exc:
            log.warning("vault token not revoked", identity=self.identity, error=_short(exc))
        self._client.token = None
        self._client.adapter.close()

    def __enter__(self) -> VaultSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VaultSession(addr={self._settings.addr!r}, identity={self.identity!r})"

    def _call(self, what: str, operation: Callable[[], _T], sleep: Callable[[float], None]) -> _T:
        """Run ``operation``, retrying while Vault cannot be reached; map sealed and 5xx."""
        addr = self._settings.addr
        delays: Sequence[float] = backoff_delays(self._settings.attempts)
        started = time.monotonic()
        last: BaseException | None = None
        for attempt in range(self._settings.attempts):
            try:
                return operation()
            except _UNREACHABLE as exc:
                last = exc
                if attempt < len(delays):
                    log.info("vault unreachable, retrying", vault=addr, attempt=attempt + 1)
                    sleep(delays[attempt])
            except hvac.exceptions.VaultDown:
                raise VaultSealedError(_sealed(addr)) from None
            except hvac.exceptions.VaultNotInitialized:
                raise VaultSealedError(f"Vault at {addr} is not initialised") from None
            except (
                hvac.exceptions.InternalServerError,
                hvac.exceptions.BadGateway,
                hvac.exceptions.UnexpectedError,
                hvac.exceptions.RateLimitExceeded,
            ) as exc:
                raise VaultError(f"Vault at {addr} failed to {what}: {_short(exc)}") from None
        raise VaultUnreachableError(
            f"Vault at {addr} is unreachable: {self._settings.attempts} attempts to {what} "
            f"over {time.monotonic() - started:.1f}s failed (last: {_short(last)}). Is it "
            "running? `rubyctl up` starts the local OpenBao; RUBY_VAULT_ADDR says where."
        )


def fetch_nats_seed(settings: ServiceSettings) -> Secret:
    """Log in as the service, read its NKEY seed, revoke the token; errors as ``login``."""
    with VaultSession.login(settings.vault, settings.identity) as vault:
        return vault.read(nats_seed_path(settings.prefix, settings.identity), NATS_SEED_FIELD)


def _read_credential(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    except OSError as exc:
        raise SettingsError(f"cannot read the AppRole {what} file {path}: {exc.strerror}") from None
    if not value:
        raise SettingsError(
            f"no AppRole {what} in {path}: run `rubyctl bootstrap`, or mount the credentials "
            "and point RUBY_VAULT_ROLE_ID_FILE / RUBY_VAULT_SECRET_ID_FILE at them"
        )
    return value


def _require_unsealed(addr: str, status: dict[str, object]) -> None:
    if not status.get("initialized", False):
        raise VaultSealedError(
            f"Vault at {addr} is not initialised: start the local stack with `rubyctl up`, "
            "or initialise and unseal your Vault"
        )
    if status.get("sealed", True):
        raise VaultSealedError(_sealed(addr))


def _sealed(addr: str) -> str:
    return (
        f"Vault at {addr} is sealed: `rubyctl up` unseals the local OpenBao; in production, "
        "unseal it with your unseal procedure"
    )


def _short(exc: BaseException | None) -> str:
    """A one-line, secret-free description of an exception (type and first line, scrubbed)."""
    if exc is None:
        return "no attempt made"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return scrub(f"{type(exc).__name__}: {text}"[:200])
