"""The exceptions a handler raises to say what should happen to its message.

- ``TransientError``: it may work later (a dependency is down, a timeout). Nak with backoff;
  after MaxDeliver attempts the message is dead-lettered.
- ``PermanentError``: it will never work (invalid data, an unknown service). Dead-letter now.
- ``UndecodableError``: the bytes are not a contract we know. Raised by the runner at the edge;
  dead-lettered at once.

Any other exception is a bug in the handler, and is treated as transient: retried, then
dead-lettered with its text, so a bug never blocks a consumer or loses a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ruby_natsx.handler import Outbound


class HandlingError(Exception):
    """Base of the exceptions that decide a message's fate."""


class TransientError(HandlingError):
    """Retry later, with backoff, until MaxDeliver; then dead-letter."""


class PermanentError(HandlingError):
    """Do not retry: dead-letter at once.

    ``outputs`` (Outbound messages, such as a "rejected" outcome and its audit record) are
    published together with the dead letter, before the original is terminated.
    """

    def __init__(self, message: str, outputs: Sequence[Outbound] = ()) -> None:
        super().__init__(message)
        self.outputs = tuple(outputs)


class UndecodableError(PermanentError):
    """The message is not a contract we can decode: dead-letter at once."""
