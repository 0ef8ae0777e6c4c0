"""API tokens as the api-tokens bucket keeps them: a name, a scope and a digest, never the token.

Not messages: KV values, one per token under its id, written by ``rubyctl token`` (the
operator) and read by the gateway, which checks every API request against them (ADR-0020).
A token is ``ruby_<id>_<secret>``; the record holds the SHA-256 digest of the whole token, so
reading the bucket gives nothing that opens the API. A revoked token keeps its record, with
``revoked`` set, so ``rubyctl token ls`` can still show it.

Scopes are ordered: ``control`` includes ``read``, ``admin`` includes both.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ruby_schemas.primitives import UtcDatetime
from ruby_schemas.registry import field_errors


class Scope(StrEnum):
    """What a token may do: ``read`` every GET and the event stream; ``control`` also call
    services, fire events and webhooks; ``admin`` also dead-letter replay and purge."""

    READ = "read"
    CONTROL = "control"
    ADMIN = "admin"

    def covers(self, needed: Scope) -> bool:
        """Whether a token of this scope may do what ``needed`` allows."""
        return ORDER.index(self) >= ORDER.index(needed)


ORDER: Final = (Scope.READ, Scope.CONTROL, Scope.ADMIN)

TOKEN_ID_PATTERN: Final = r"[0-9a-f]{12}"  # noqa: S105 - a pattern, not a password
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


class ApiTokenRecord(BaseModel):
    """One token: who it is for, what it may do, how to recognise it, and until when."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(pattern=f"^{TOKEN_ID_PATTERN}$")
    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    scope: Scope
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole token")
    created: UtcDatetime
    expires: UtcDatetime | None = None
    revoked: UtcDatetime | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why this token no longer opens anything (``revoked``, ``expired``), or None."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return None


class ApiTokenRecordError(ValueError):
    """A stored token record is not its contract; names the fields, never their values."""


def read_token_record(raw: bytes | str) -> ApiTokenRecord:
    """The record in ``raw``; `ApiTokenRecordError` naming the offending fields if it is not
    one."""
    try:
        return ApiTokenRecord.model_validate_json(raw)
    except ValidationError as exc:
        fields = ", ".join(e.path for e in field_errors(exc))
        raise ApiTokenRecordError(f"not an API token record: {fields}") from None
