"""NKEY user keys: make one, check one, derive its public key (ADR-0005).

A seed is the private half: it lives in Vault and in the memory of the process it belongs to,
nowhere else. Only the public key (``U...``) is written to the nats-server configuration.
Nothing here logs or formats a seed into an error message.
"""

from __future__ import annotations

import secrets

import nkeys


class NkeyError(ValueError):
    """A value is not a usable NKEY user seed (the message never contains the value)."""


def new_user_seed() -> str:
    """A fresh NKEY user seed (``SU...``, 58 characters) from the OS's secure random source."""
    return str(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode())


def is_user_seed(seed: str) -> bool:
    """Whether ``seed`` decodes as an NKEY *user* seed (not an account, operator, ... seed)."""
    try:
        prefix, raw = nkeys.decode_seed(seed.encode())
    except (nkeys.NkeysError, ValueError):
        return False
    return bool(prefix == nkeys.PREFIX_BYTE_USER and len(raw) == 32)


def user_public_key(seed: str) -> str:
    """The public key (``U...``) of a user seed; raise ``NkeyError`` if it is not one."""
    if not is_user_seed(seed):
        raise NkeyError("not an NKEY user seed")
    pair = nkeys.from_seed(bytearray(seed.encode()))
    try:
        return str(pair.public_key.decode())
    finally:
        pair.wipe()
