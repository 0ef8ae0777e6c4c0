"""Fixtures for the runtime tests: a JSON log capture that is undone after each test."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from ruby_runtime.logging import configure_logging, reset_logging

SERVICE = "test-svc"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logs(stream: io.StringIO) -> Callable[[], list[dict[str, Any]]]:
    """Configure JSON logging into ``stream``; the returned callable parses what was written."""
    configure_logging(SERVICE, stream=stream, renderer="json")

    def records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    return records
