"""The one exception a consumer catches when a message does not meet its contract."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def dotted(loc: Sequence[int | str]) -> str:
    """A location as a path, such as `data.target.entity_id[1]` or `data.data['a.b']`.

    A name made of letters, digits, `_` and `-` is written bare, any other in brackets as a
    Python literal, so a path can be read back unambiguously and a hostile key (a control
    character, a line break) never reaches a log line or a terminal unescaped.
    """
    path = ""
    for part in loc:
        if isinstance(part, int) or part == "[key]":
            path += f"[{part}]" if isinstance(part, int) else part
        elif _BARE.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{part!r}]"
    return path


def shown(text: str, limit: int = 64) -> str:
    """`text` quoted for a message: escaped like a Python literal, cut after `limit` characters."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


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
        """`message_type` is a registered type (or `None`: unknown, or not read yet)."""
        self.message_type = message_type
        self.errors = tuple(errors)
        prefix = f"{message_type}: " if message_type else ""
        super().__init__(prefix + "; ".join(str(error) for error in self.errors))

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted paths of the offending fields, in the order they were found."""
        return tuple(error.path for error in self.errors)
