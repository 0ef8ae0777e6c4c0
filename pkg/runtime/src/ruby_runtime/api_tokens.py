"""Minting and recognising API tokens (ADR-0020); the stored record is
`ruby_schemas.api_tokens.ApiTokenRecord`.

A token is ``ruby_<id>_<secret>``: ``id`` (12 hex digits) finds its record, ``secret`` is 32
random bytes in URL-safe base64. Only the SHA-256 digest of the whole token is stored: the
secret carries 256 bits, so a fast hash is enough, and comparing digests in constant time
keeps the check free of timing hints.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

from ruby_runtime.secret import Secret
from ruby_schemas.api_tokens import TOKEN_ID_PATTERN

TOKEN_SHAPE: Final = re.compile(rf"ruby_({TOKEN_ID_PATTERN})_[A-Za-z0-9_-]{{43}}")


def new_token() -> tuple[str, Secret]:
    """A fresh token: its id and the whole token (shown once, never stored)."""
    token_id = secrets.token_hex(6)
    token = f"ruby_{token_id}_{secrets.token_urlsafe(32)}"
    return token_id, Secret(token, "API token")


def token_id(token: str) -> str | None:
    """The id of a well-formed token, or None for anything else."""
    match = TOKEN_SHAPE.fullmatch(token)
    return match.group(1) if match else None


def digest(token: str) -> str:
    """The SHA-256 digest (hex) stored for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_digest: str) -> bool:
    """Whether ``token`` is the one ``stored_digest`` was made from (constant time)."""
    return hmac.compare_digest(digest(token), stored_digest)
