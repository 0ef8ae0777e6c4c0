"""The one exception a consumer catches when a message does not meet its contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a message was refused: where (a dotted path such as `data.entity_id`) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<message>'}: {self.message}"


class ContractError(ValueError):
    """A message is not valid JSON, has an unknown `type`, or fails its contract.

    `errors` lists every offending field; `str(error)` names each path, so a log line or a
    dead-letter reason says which field was wrong. It is a `ValueError`, never a pydantic
    `ValidationError`, so nothing past the decoding edge depends on pydantic's error types.
    """

    def __init__(self, message_type: str | None, errors: Sequence[FieldError]) -> None:
        self.message_type = message_type
        self.errors = tuple(errors)
        prefix = f"{message_type}: " if message_type else ""
        super().__init__(prefix + "; ".join(str(error) for error in self.errors))

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted paths of the offending fields, in the order they were found."""
        return tuple(error.path for error in self.errors)
