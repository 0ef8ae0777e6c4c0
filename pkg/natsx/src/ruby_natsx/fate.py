"""The one place that decides a message's fate after its handler ran (STYLE.md §3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ruby_natsx.errors import PermanentError, UndecodableError


class Verdict(StrEnum):
    ACK = "ack"
    NAK = "nak"
    DEAD_LETTER = "dead_letter"


class Reason(StrEnum):
    UNDECODABLE = "undecodable"
    PERMANENT_ERROR = "permanent_error"
    MAX_DELIVERIES = "max_deliveries"
    TRANSIENT_ERROR = "transient_error"


@dataclass(frozen=True)
class Fate:
    verdict: Verdict
    delay: float = 0.0
    reason: Reason | None = None
    error: str = ""


ACK = Fate(Verdict.ACK)


def decide(
    error: BaseException | None,
    *,
    delivered: int,
    max_deliver: int,
    backoff: Sequence[float],
) -> Fate:
    """Map the outcome of one delivery to ack, nak-with-delay or dead-letter.

    ``delivered`` is this delivery's number (1 for the first). A transient failure on the last
    allowed delivery is dead-lettered rather than nak'ed: JetStream would otherwise drop it
    silently once MaxDeliver is reached.
    """
    if error is None:
        return ACK
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, UndecodableError):
        return Fate(Verdict.DEAD_LETTER, reason=Reason.UNDECODABLE, error=text)
    if isinstance(error, PermanentError):
        return Fate(Verdict.DEAD_LETTER, reason=Reason.PERMANENT_ERROR, error=text)
    if max_deliver > 0 and delivered >= max_deliver:
        return Fate(Verdict.DEAD_LETTER, reason=Reason.MAX_DELIVERIES, error=text)
    delay = backoff[min(delivered, len(backoff)) - 1] if backoff else 0.0
    return Fate(Verdict.NAK, delay=delay, reason=Reason.TRANSIENT_ERROR, error=text)
