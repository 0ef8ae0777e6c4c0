"""What counts as a secret in a log event, and the processor that removes it.

This module is the one place that decides what gets redacted. A value is replaced with
``REDACTED`` when either

* its key looks secret (``is_secret_key``): the key, lower-cased with its separators removed,
  contains one of ``SECRET_KEY_FRAGMENTS``, or one of its words (split on ``_``, ``-``, ``.``,
  spaces and camelCase) is one of ``SECRET_KEY_WORDS``; the whole value goes, whatever its
  type, at any depth of nested mappings and sequences; or
* a part of a string looks like a secret (``SECRET_VALUE_PATTERNS``), wherever it appears:
  in the event text, in a bound value, in a nested structure, in a rendered traceback. Only the
  matching part is replaced.

Over-redaction is the accepted failure mode: ``token_count`` loses its value, a seed never leaks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

from structlog.typing import EventDict, WrappedLogger

__all__ = [
    "REDACTED",
    "SECRET_KEY_FRAGMENTS",
    "SECRET_KEY_WORDS",
    "SECRET_VALUE_PATTERNS",
    "is_secret_key",
    "redact",
    "redact_secrets",
    "scrub",
]

REDACTED: Final = "[REDACTED]"

SECRET_KEY_FRAGMENTS: Final[frozenset[str]] = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",  # also secret_id (AppRole), client_secret, secrets
        "token",  # access_token, ha_token, vault_token, X-Auth-Token
        "seed",  # NKEY seeds
        "nkey",
        "apikey",  # api_key, apiKey, X-Api-Key
        "authorization",
        "credential",
        "privatekey",  # private_key, privateKey
        "roleid",  # AppRole role_id: half of a login, kept out of logs as well
        "cookie",
    }
)
"""Matched as substrings of the key, lower-cased, with every non-alphanumeric removed."""

SECRET_KEY_WORDS: Final[frozenset[str]] = frozenset({"auth", "pwd"})
"""Matched only as whole words, so that ``author`` and ``authenticated`` keep their values."""

SECRET_VALUE_PATTERNS: Final[Mapping[str, str]] = {
    # A PEM private key block (RSA, EC, OPENSSH, ENCRYPTED, ...); an unterminated block is
    # redacted to the end of the string.
    "pem_private_key": (
        r"(?s:-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----"
        r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|.*))"
    ),
    # A JSON Web Token (Home Assistant long-lived access tokens are JWTs).
    "jwt": r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
    # An HTTP bearer credential, with the word "Bearer" itself.
    "bearer": r"(?i:\bbearer\s+)[A-Za-z0-9._~+/-]+=*",
    # A Vault / OpenBao token: hvs. hvb. hvr. (current) or s. b. (legacy) and 20+ token chars.
    # Not when the prefix continues a dotted name (a NATS subject segment "s").
    "vault_token": r"(?<![A-Za-z0-9_.])(?:hv[sbr]|[sb])\.[A-Za-z0-9_-]{20,}",
    # An NKEY seed: S, the key type (User, Account, Operator, Server/Node, Cluster, Curve/X),
    # then 55 base32 characters.
    "nkey_seed": r"S[UAONCX][A-Z2-7]{55}",
}
"""Regular expressions for secret-looking text, by name; each match becomes ``REDACTED``."""

_SECRET_TEXT: Final = re.compile("|".join(f"(?:{p})" for p in SECRET_VALUE_PATTERNS.values()))
_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]+")
_WORD_BOUNDARY: Final = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH: Final = 16


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether values under ``key`` are secrets (see the module docstring for the rule)."""
    compact = _NOT_ALNUM.sub("", key.lower())
    if any(fragment in compact for fragment in SECRET_KEY_FRAGMENTS):
        return True
    return any(word.lower() in SECRET_KEY_WORDS for word in _WORD_BOUNDARY.split(key))


def scrub(text: str) -> str:
    """Return ``text`` with every part matching ``SECRET_VALUE_PATTERNS`` replaced."""
    return _SECRET_TEXT.sub(REDACTED, text)


def redact(value: object, _depth: int = 0) -> object:
    """Return ``value`` with its secrets replaced; ``value`` itself is never modified.

    Mappings and sequences are copied (tuples and sets become lists, as JSON renders them);
    numbers, booleans and ``None`` pass through; any other object is kept unless its ``repr``
    (what the renderers print) holds a secret, and then the scrubbed ``repr`` replaces it.
    """
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth >= _MAX_DEPTH:
        return scrub(repr(value))
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key)
            else redact(item, _depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, _depth + 1) for item in value]
    text = repr(value)
    cleaned = scrub(text)
    return value if cleaned == text else cleaned


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact secret keys and secret-looking text in the whole event.

    Place it after every processor that adds data (including exception formatting) and just
    before the renderer.
    """
    return {
        key: REDACTED if is_secret_key(key) else redact(value) for key, value in event_dict.items()
    }
