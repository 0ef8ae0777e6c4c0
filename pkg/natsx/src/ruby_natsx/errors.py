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


class HandlingError(Exception):
    """Base of the exceptions that decide a message's fate."""


class TransientError(HandlingError):
    """Retry later, with backoff, until MaxDeliver; then dead-letter."""


class PermanentError(HandlingError):
    """Do not retry: dead-letter at once."""


class UndecodableError(PermanentError):
    """The message is not a contract we can decode: dead-letter at once."""
