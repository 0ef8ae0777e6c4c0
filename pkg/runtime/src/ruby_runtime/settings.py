"""A service's settings, read once from ``RUBY_*`` environment variables (plain code, frozen).

Every variable is optional; the defaults are the local stack that ``rubyctl up`` (``make run``)
runs, with its state under ``.ruby/``. A production deployment sets the addresses and mounts
the AppRole credential files where ``RUBY_VAULT_ROLE_ID_FILE`` / ``RUBY_VAULT_SECRET_ID_FILE``
point. An invalid value raises ``SettingsError`` naming the variable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from ruby_runtime.errors import SettingsError

__all__ = [
    "ENVIRONMENT",
    "ServiceSettings",
    "VaultSettings",
    "approle_dir",
    "event_loop_factory",
]

_N = TypeVar("_N", int, float)

DEFAULT_STATE_DIR: Final = ".ruby"
DEFAULT_PREFIX: Final = "ruby"
DEFAULT_NATS_URL: Final = "tls://127.0.0.1:4222"
DEFAULT_VAULT_ADDR: Final = "http://127.0.0.1:8200"
DEFAULT_VAULT_MOUNT: Final = "ruby"

ENVIRONMENT: Final[Mapping[str, str]] = {
    "RUBY_STATE_DIR": f"local state directory (default {DEFAULT_STATE_DIR})",
    "RUBY_PREFIX": f"subject prefix of the installation (default {DEFAULT_PREFIX})",
    "RUBY_LOG_LEVEL": "log level (default INFO)",
    "RUBY_NATS_URL": f"nats-server to connect to over TLS (default {DEFAULT_NATS_URL})",
    "RUBY_NATS_CA_FILE": "CA that signed nats-server's certificate (default <state>/pki/ca.pem)",
    "RUBY_VAULT_ADDR": f"Vault / OpenBao address (default {DEFAULT_VAULT_ADDR})",
    "RUBY_VAULT_CA_FILE": "CA for an https Vault address (default: the system's CAs)",
    "RUBY_VAULT_MOUNT": f"KV v2 mount holding the secrets (default {DEFAULT_VAULT_MOUNT})",
    "RUBY_VAULT_ROLE_ID_FILE": "AppRole role id file (default <state>/approle/<identity>/role_id)",
    "RUBY_VAULT_SECRET_ID_FILE": (
        "AppRole secret id file (default <state>/approle/<identity>/secret_id)"
    ),
    "RUBY_VAULT_ATTEMPTS": "attempts to reach Vault before giving up (default 5)",
    "RUBY_VAULT_TIMEOUT": "seconds per Vault request (default 5)",
    "RUBY_EVENT_LOOP": "uvloop or asyncio: the service's event loop (default uvloop, ADR-0034)",
}
"""Every variable a service reads, with its meaning and default (the README's table)."""


EVENT_LOOPS: Final = ("uvloop", "asyncio")


def event_loop_name(env: Mapping[str, str]) -> str:
    """``RUBY_EVENT_LOOP``, checked: one of `EVENT_LOOPS` (`SettingsError` otherwise)."""
    name = env.get("RUBY_EVENT_LOOP", "").strip().lower() or EVENT_LOOPS[0]
    if name not in EVENT_LOOPS:
        raise SettingsError(f"RUBY_EVENT_LOOP: {name!r} is none of {', '.join(EVENT_LOOPS)}")
    return name


def event_loop_factory(
    environ: Mapping[str, str] | None = None,
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``RUBY_EVENT_LOOP`` names: uvloop's (the default; ADR-0034 has the
    figures) or None for asyncio's own. `SettingsError` for any other name."""
    if event_loop_name(os.environ if environ is None else environ) == "asyncio":
        return None
    import uvloop  # only the services that run on it load it

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def approle_dir(state_dir: Path, identity: str) -> Path:
    """Where ``rubyctl bootstrap`` keeps an identity's AppRole credentials locally (0600)."""
    return state_dir / "approle" / identity


@dataclass(frozen=True)
class VaultSettings:
    """How to reach Vault and log in as one identity. Holds file paths, never the secrets."""

    addr: str
    mount: str
    role_id_file: Path
    secret_id_file: Path
    ca_file: Path | None = None
    attempts: int = 5
    timeout: float = 5.0


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a service needs to start: who it is, where NATS and Vault are."""

    identity: str
    prefix: str
    state_dir: Path
    log_level: str
    nats_url: str
    nats_ca_file: Path
    vault: VaultSettings
    event_loop: str = EVENT_LOOPS[0]

    @classmethod
    def from_env(cls, identity: str, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the ``RUBY_*`` variables (``os.environ`` by default); see ``ENVIRONMENT``."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        _check_name("identity", identity)
        state_dir = Path(get("RUBY_STATE_DIR", DEFAULT_STATE_DIR))
        prefix = get("RUBY_PREFIX", DEFAULT_PREFIX)
        _check_name("RUBY_PREFIX", prefix)
        level = get("RUBY_LOG_LEVEL", "INFO").upper()
        if level not in logging.getLevelNamesMapping():
            raise SettingsError(f"RUBY_LOG_LEVEL: unknown log level {level!r}")
        nats_url = get("RUBY_NATS_URL", DEFAULT_NATS_URL)
        if urlsplit(nats_url).scheme not in ("tls", "nats"):
            raise SettingsError(f"RUBY_NATS_URL: {nats_url!r} is not a tls:// address")
        own = approle_dir(state_dir, identity)
        vault_ca = env.get("RUBY_VAULT_CA_FILE", "").strip()
        vault = VaultSettings(
            addr=_vault_addr(get("RUBY_VAULT_ADDR", DEFAULT_VAULT_ADDR)),
            mount=get("RUBY_VAULT_MOUNT", DEFAULT_VAULT_MOUNT),
            role_id_file=Path(get("RUBY_VAULT_ROLE_ID_FILE", str(own / "role_id"))),
            secret_id_file=Path(get("RUBY_VAULT_SECRET_ID_FILE", str(own / "secret_id"))),
            ca_file=Path(vault_ca) if vault_ca else None,
            attempts=_number("RUBY_VAULT_ATTEMPTS", get("RUBY_VAULT_ATTEMPTS", "5"), int, 1, 20),
            timeout=_number("RUBY_VAULT_TIMEOUT", get("RUBY_VAULT_TIMEOUT", "5"), float, 0.1, 300),
        )
        return cls(
            identity=identity,
            prefix=prefix,
            state_dir=state_dir,
            log_level=level,
            nats_url=nats_url,
            nats_ca_file=Path(get("RUBY_NATS_CA_FILE", str(state_dir / "pki" / "ca.pem"))),
            vault=vault,
            event_loop=event_loop_name(env),
        )


def _check_name(what: str, value: str) -> None:
    if not value or not all(c.isalnum() or c in "_-" for c in value) or not value.isascii():
        raise SettingsError(f"{what}: {value!r} must be letters, digits, '_' or '-'")


def _vault_addr(addr: str) -> str:
    """An http(s) address; plain http only to a loopback address (the local OpenBao)."""
    parts = urlsplit(addr)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"RUBY_VAULT_ADDR: {addr!r} is not an http(s):// address")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise SettingsError(
            f"RUBY_VAULT_ADDR: {addr!r} is plain http to a non-loopback host; use https"
        )
    return addr.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(name: str, raw: str, kind: type[_N], low: float, high: float) -> _N:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}: {raw!r} is not between {low:g} and {high:g}")
    return value
