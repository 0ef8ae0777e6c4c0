"""bind_message_context: nesting, restoration, and isolation between concurrent tasks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from ruby_runtime.correlation import bind_message_context, current_correlation_id
from ruby_runtime.logging import get_logger

Records = Callable[[], list[dict[str, Any]]]


def test_current_correlation_id_follows_the_block() -> None:
    assert current_correlation_id() is None
    with bind_message_context("outer"):
        assert current_correlation_id() == "outer"
        with bind_message_context("inner"):
            assert current_correlation_id() == "inner"
        assert current_correlation_id() == "outer"
    assert current_correlation_id() is None


def test_nested_blocks_override_then_restore(logs: Records) -> None:
    log = get_logger()
    with bind_message_context("outer", causation_id="outer-cause", subject="ruby.evt.a"):
        with bind_message_context("inner", delivery=2):
            log.info("inner")
        log.info("outer again")

    inner, outer = logs()
    assert inner["correlation_id"] == "inner"
    assert "causation_id" not in inner  # the inner message has no cause; the outer's must not show
    assert inner["subject"] == "ruby.evt.a"
    assert inner["delivery"] == 2
    assert outer["correlation_id"] == "outer"
    assert outer["causation_id"] == "outer-cause"
    assert "delivery" not in outer


def test_everything_bound_inside_the_block_is_dropped_on_exit(logs: Records) -> None:
    with bind_message_context("m-1"):
        structlog.contextvars.bind_contextvars(rule_id="porch")
        get_logger().info("inside")
    get_logger().info("outside")

    inside, outside = logs()
    assert inside["rule_id"] == "porch"
    assert "rule_id" not in outside


def test_context_is_restored_when_the_block_raises() -> None:
    with bind_message_context("outer"):
        with pytest.raises(RuntimeError), bind_message_context("inner"):
            raise RuntimeError("handler failed")
        assert current_correlation_id() == "outer"
    assert current_correlation_id() is None


def test_explicit_keyword_wins_over_the_bound_value(logs: Records) -> None:
    with bind_message_context("bound"):
        get_logger().info("explicit", correlation_id="explicit")

    assert logs()[0]["correlation_id"] == "explicit"


@pytest.mark.parametrize("key", ["event", "level", "service", "ts", "exception"])
def test_reserved_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="reserved"), bind_message_context("c", **{key: "x"}):
        pass  # pragma: no cover - never entered
    assert current_correlation_id() is None


def test_empty_correlation_id_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"), bind_message_context(""):
        pass  # pragma: no cover - never entered


async def test_two_concurrent_tasks_each_log_their_own_correlation_id(logs: Records) -> None:
    log = get_logger()
    a_bound, b_bound = asyncio.Event(), asyncio.Event()

    async def handle(correlation_id: str, mine: asyncio.Event, other: asyncio.Event) -> None:
        with bind_message_context(correlation_id):
            mine.set()
            await other.wait()  # both blocks are open at the same time from here on
            log.info("structlog", expected=correlation_id)
            await asyncio.sleep(0)
            logging.getLogger("third.party").info("stdlib", extra={"expected": correlation_id})
            await asyncio.sleep(0)
            log.info("structlog again", expected=correlation_id)

    await asyncio.gather(handle("corr-a", a_bound, b_bound), handle("corr-b", b_bound, a_bound))
    log.info("after both")

    handled = [r for r in logs() if "expected" in r]
    [after] = [r for r in logs() if r["event"] == "after both"]
    assert len(handled) == 6
    assert all(r["correlation_id"] == r["expected"] for r in handled)
    assert {r["correlation_id"] for r in handled[:2]} == {"corr-a", "corr-b"}  # interleaved
    assert "correlation_id" not in after


async def test_many_interleaved_tasks_never_leak(logs: Records) -> None:
    log = get_logger()
    rng = random.Random(4)  # noqa: S311 - scheduling jitter, not cryptography

    async def handle(n: int) -> None:
        with bind_message_context(f"corr-{n}", causation_id=f"cause-{n}"):
            for step in range(3):
                await asyncio.sleep(rng.random() / 1000)
                log.info("step", n=n, step=step)

    await asyncio.gather(*(handle(n) for n in range(40)))

    records = [r for r in logs() if r["logger"] == __name__]
    assert len(records) == 120
    assert all(r["correlation_id"] == f"corr-{r['n']}" for r in records)
    assert all(r["causation_id"] == f"cause-{r['n']}" for r in records)
    assert current_correlation_id() is None


async def test_a_task_started_inside_the_block_inherits_the_context() -> None:
    async def child() -> str | None:
        return current_correlation_id()

    with bind_message_context("parent"):
        task = asyncio.create_task(child())
    assert await task == "parent"
