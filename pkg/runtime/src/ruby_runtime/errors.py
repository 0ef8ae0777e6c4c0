"""Why a service could not start, each with its own exit code and a message that says what to do.

Every class is a ``StartupError`` with an ``exit_code``; ``ruby_runtime.startup.run_service``
turns one into a log line, a line on stderr and that exit code. Messages name addresses,
paths and identities, never a secret value (ADR-0015).

| code | class | meaning |
|---|---|---|
| 78 | ``SettingsError`` | a ``RUBY_*`` variable is invalid, or a credentials file is missing |
| 80 | ``VaultError`` | Vault answered something unexpected |
| 81 | ``VaultUnreachableError`` | no answer from Vault after the bounded, jittered retries |
| 82 | ``VaultSealedError`` | Vault is sealed (or not initialised) |
| 83 | ``VaultLoginRefusedError`` | Vault refused the AppRole login (role id or secret id) |
| 84 | ``VaultPermissionDeniedError`` | the identity's policy does not allow reading that path |
| 85 | ``SecretMissingError`` | nothing (or no such key) at the identity's own path |
| 86 | ``NatsRefusedError`` | nats-server refused the connection (TLS or NKEY) |
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "NatsRefusedError",
    "SecretMissingError",
    "SettingsError",
    "StartupError",
    "VaultError",
    "VaultLoginRefusedError",
    "VaultPermissionDeniedError",
    "VaultSealedError",
    "VaultUnreachableError",
]


class StartupError(Exception):
    """A service cannot start; ``exit_code`` is what its process exits with."""

    exit_code: ClassVar[int] = 70


class SettingsError(StartupError):
    exit_code = 78


class VaultError(StartupError):
    exit_code = 80


class VaultUnreachableError(VaultError):
    exit_code = 81


class VaultSealedError(VaultError):
    exit_code = 82


class VaultLoginRefusedError(VaultError):
    exit_code = 83


class VaultPermissionDeniedError(VaultError):
    exit_code = 84


class SecretMissingError(VaultError):
    exit_code = 85


class NatsRefusedError(StartupError):
    exit_code = 86
