"""One function decides a message's fate: broker-free unit tests of the mapping."""

import pytest

from ruby_natsx.errors import PermanentError, TransientError, UndecodableError
from ruby_natsx.fate import ACK, Reason, Verdict, decide

BACKOFF = (1.0, 5.0, 15.0)


def test_success_is_acked() -> None:
    assert decide(None, delivered=1, max_deliver=5, backoff=BACKOFF) == ACK


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UndecodableError("data.entity_id: invalid"), Reason.UNDECODABLE),
        (PermanentError("unknown service"), Reason.PERMANENT_ERROR),
    ],
)
def test_permanent_failures_are_dead_lettered_on_the_first_delivery(
    error: Exception, reason: Reason
) -> None:
    fate = decide(error, delivered=1, max_deliver=5, backoff=BACKOFF)
    assert fate.verdict is Verdict.DEAD_LETTER
    assert fate.reason is reason
    assert str(error) in fate.error


@pytest.mark.parametrize(("delivered", "delay"), [(1, 1.0), (2, 5.0), (3, 15.0), (4, 15.0)])
def test_transient_failures_are_nacked_with_the_backoff_of_their_attempt(
    delivered: int, delay: float
) -> None:
    fate = decide(TransientError("HA down"), delivered=delivered, max_deliver=5, backoff=BACKOFF)
    assert fate.verdict is Verdict.NAK
    assert fate.delay == delay


def test_the_last_allowed_delivery_is_dead_lettered_not_dropped() -> None:
    fate = decide(TransientError("HA down"), delivered=5, max_deliver=5, backoff=BACKOFF)
    assert fate.verdict is Verdict.DEAD_LETTER
    assert fate.reason is Reason.MAX_DELIVERIES


def test_an_unexpected_exception_is_a_bug_and_is_retried_like_a_transient_one() -> None:
    fate = decide(KeyError("oops"), delivered=1, max_deliver=5, backoff=BACKOFF)
    assert fate.verdict is Verdict.NAK
    assert "KeyError" in fate.error


def test_unlimited_deliveries_never_dead_letter_a_transient_failure() -> None:
    fate = decide(TransientError("x"), delivered=1000, max_deliver=-1, backoff=BACKOFF)
    assert fate.verdict is Verdict.NAK
