"""Test helper: attempt an operation as one identity and say how the server answered.

Used by the permission matrices (``pkg/natsx/tests/test_permissions_*.py``). An attempt ends
as soon as the server reports a permission violation of the attempted subject (the request
would only time out), or when the operation returns or fails; each outcome is one of
``ALLOWED``, ``BY_PERMISSIONS`` (the authorization refused the subject), ``BY_STREAM`` (the
stream's own configuration refused it) or a text describing anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from ruby_ctl.testing import Installation
from ruby_natsx.connection import flushed

ALLOWED: Final = "allowed"
BY_PERMISSIONS: Final = "refused by permissions"
BY_STREAM: Final = "refused by the stream"
REFUSED: Final = "refused"

Act = Callable[[], Awaitable[object]]

_STREAM_REFUSALS: Final = (
    "not permitted",  # purge, message delete, rollup on a stream that denies them
    "can not cancel deny",  # an update lifting deny_delete / deny_purge
    "already in use with a different configuration",  # a create over an existing stream
    "ttl is disabled",  # a per-message TTL on a stream that does not allow one
    "subjects overlap with an existing stream",  # taking another stream's subjects
)


class Violations(logging.Handler):
    """The permission violations the server reported; ``ruby_natsx.connection`` logs them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lower()
        if "permissions violation" in message:
            self.seen.append(message)


@contextlib.contextmanager
def watching_violations() -> Iterator[Violations]:
    """Collect the permission violations ``ruby_natsx.connection`` logs while inside."""
    handler = Violations()
    logger = logging.getLogger("ruby_natsx.connection")
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Matrix:
    """Runs attempts as the installation's identities and keeps score."""

    inst: Installation
    violations: Violations
    nc: dict[str, Client]
    ok: dict[str, int] = field(default_factory=lambda: {ALLOWED: 0, REFUSED: 0})
    wrong: list[str] = field(default_factory=list)

    def js(self, identity: str) -> JetStreamContext:
        return self.nc[identity].jetstream(timeout=5)

    async def expect(self, identity: str, what: str, act: Act, outcome: str, subject: str) -> None:
        """Run ``act`` as ``identity``; record whether the server did what ``outcome`` says.
        ``subject`` is the subject whose violation means "refused by permissions"."""
        got = await self._attempt(identity, act, subject)
        if got == outcome:
            self.ok[ALLOWED if outcome == ALLOWED else REFUSED] += 1
        else:
            self.wrong.append(f"{identity}: {what} ({subject}): expected {outcome}, got {got}")

    def counts(self, name: str) -> str:
        return (
            f"{name}: {self.ok[ALLOWED]} allowed ok, {self.ok[REFUSED]} refused ok, "
            f"{len(self.wrong)} wrong"
        )

    async def _attempt(self, identity: str, act: Act, subject: str) -> str:
        before = len(self.violations.seen)
        task = asyncio.ensure_future(act())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not task.done() and loop.time() < deadline:
            if self._violated(before, subject):
                break  # the server said no; the request would only time out
            await asyncio.sleep(0.002)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task  # cancelled, or done: its outcome is read below
        error = None if task.cancelled() else task.exception()
        await flushed(self.nc[identity])  # a violation of what was sent has arrived by now
        if self._violated(before, subject):
            return BY_PERMISSIONS
        if isinstance(error, APIError):
            text = str(error.description)
            protected = any(refusal in text.lower() for refusal in _STREAM_REFUSALS)
            return BY_STREAM if protected else f"API error {error.err_code}: {text}"
        if task.cancelled():
            return "no answer"
        return ALLOWED if error is None else f"failed: {type(error).__name__}: {error}"

    def _violated(self, before: int, subject: str) -> bool:
        return any(f'"{subject.lower()}"' in m for m in self.violations.seen[before:])
