"""configure_logging: the JSON line shape, stdlib routing, renderer choice, reconfiguration."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

import pytest
from structlog.typing import EventDict, WrappedLogger

from ruby_runtime.logging import (
    bind_message_context,
    configure_logging,
    get_logger,
    reset_logging,
)

Records = Callable[[], list[dict[str, Any]]]
LEAKED_VALUE = "would-leak"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _raise(exc: BaseException) -> NoReturn:
    raise exc


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_event_is_one_json_object_with_the_required_keys(logs: Records) -> None:
    get_logger("ruby.test").info("rule fired", rule_id="porch-light", attempt=2)

    [record] = logs()
    assert record["event"] == "rule fired"
    assert record["level"] == "info"
    assert record["service"] == "test-svc"
    assert record["logger"] == "ruby.test"
    assert record["rule_id"] == "porch-light"
    assert record["attempt"] == 2
    assert list(record)[:5] == ["ts", "level", "service", "logger", "event"]
    assert "correlation_id" not in record


def test_timestamp_is_iso8601_utc(logs: Records) -> None:
    before = datetime.now().astimezone()
    get_logger().warning("tick")
    after = datetime.now().astimezone()

    ts = datetime.fromisoformat(logs()[0]["ts"])
    assert ts.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= ts <= after + timedelta(seconds=1)


def test_default_logger_name_is_the_calling_module(logs: Records) -> None:
    get_logger().info("named")

    assert logs()[0]["logger"] == __name__


def test_correlation_id_is_present_inside_the_block_only(logs: Records) -> None:
    log = get_logger()
    log.info("before")
    with bind_message_context("corr-1", causation_id="cause-1"):
        log.info("inside")
    log.info("after")

    before, inside, after = logs()
    assert "correlation_id" not in before
    assert inside["correlation_id"] == "corr-1"
    assert inside["causation_id"] == "cause-1"
    assert "correlation_id" not in after
    assert "causation_id" not in after


def test_stdlib_records_come_out_as_the_same_json(logs: Records) -> None:
    with bind_message_context("corr-2"):
        logging.getLogger("nats.aio.client").warning(
            "reconnecting to %s", "nats://127.0.0.1:4222", extra={"attempt": 3}
        )

    [record] = logs()
    assert record["event"] == "reconnecting to nats://127.0.0.1:4222"
    assert record["level"] == "warning"
    assert record["service"] == "test-svc"
    assert record["logger"] == "nats.aio.client"
    assert record["correlation_id"] == "corr-2"
    assert record["attempt"] == 3
    assert {"ts", "level", "service", "logger", "event"} <= set(record)


def test_structlog_positional_arguments_are_interpolated(logs: Records) -> None:
    get_logger().info("took %d ms", 12)

    assert logs()[0]["event"] == "took 12 ms"


@pytest.mark.parametrize("source", ["structlog", "stdlib"])
def test_an_exception_is_a_structured_field_on_the_same_line(
    logs: Records, stream: io.StringIO, source: str
) -> None:
    try:
        _raise(KeyError("light.porch"))
    except KeyError:
        if source == "structlog":
            get_logger().exception("lookup failed")
        else:
            logging.getLogger("third.party").exception("lookup failed")

    assert len(stream.getvalue().splitlines()) == 1
    [record] = logs()
    assert record["level"] == "error"
    [exc] = record["exception"]
    assert exc["exc_type"] == "KeyError"
    assert exc["exc_value"] == "'light.porch'"
    assert [frame["name"] for frame in exc["frames"]] == [
        "test_an_exception_is_a_structured_field_on_the_same_line",
        "_raise",
    ]
    assert all("locals" not in frame for frame in exc["frames"])


def test_level_filters_structlog_and_stdlib(stream: io.StringIO) -> None:
    configure_logging("svc", level="warning", stream=stream, renderer="json")
    log = get_logger()
    log.info("dropped")
    logging.getLogger("other").info("dropped too")
    log.warning("kept")
    logging.getLogger("other").error("kept too")

    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["kept", "kept too"]


def test_unknown_level_is_refused(stream: io.StringIO) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("svc", level="LOUD", stream=stream)


def test_reconfiguring_replaces_the_previous_configuration() -> None:
    first, second = io.StringIO(), io.StringIO()
    log = get_logger("kept.across")  # obtained before any configuration, used after each

    configure_logging("first", stream=first, renderer="json")
    log.info("one")
    configure_logging("second", stream=second, renderer="json")
    log.info("two")
    logging.getLogger("stdlib").warning("three")

    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["one"]
    records = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["two", "three"]
    assert {r["service"] for r in records} == {"second"}


def test_reset_logging_stops_output(stream: io.StringIO) -> None:
    configure_logging("svc", stream=stream, renderer="json")
    reset_logging()
    logging.getLogger("x").error("after reset")

    assert stream.getvalue() == ""


def test_extra_processors_run_on_every_event_before_redaction(stream: io.StringIO) -> None:
    def add_trace(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict["trace_id"] = "4bf92f3577b34da6"
        event_dict["api_key"] = LEAKED_VALUE
        return event_dict

    configure_logging("svc", stream=stream, renderer="json", processors=[add_trace])
    get_logger().info("a")
    logging.getLogger("b").warning("b")

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["trace_id"] for r in records] == ["4bf92f3577b34da6"] * 2
    assert [r["api_key"] for r in records] == ["[REDACTED]"] * 2


def test_auto_renderer_is_console_on_a_terminal() -> None:
    terminal = FakeTerminal()
    configure_logging("svc", stream=terminal)
    get_logger().info("hello terminal", room="kitchen")

    text = ANSI_ESCAPE.sub("", terminal.getvalue())
    assert terminal.getvalue() != text  # coloured, since it is a terminal
    assert "hello terminal" in text
    assert "room=kitchen" in text
    assert "service=svc" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_renderer_on_a_real_pty_is_console() -> None:
    master, slave = os.openpty()
    with open(slave, "w", encoding="utf-8") as terminal:
        configure_logging("svc", stream=terminal)
        get_logger().info("hello pty")
        reset_logging()
        ready, _, _ = select.select([master], [], [], 5)
        assert ready, "nothing was written to the pty"
        text = os.read(master, 65536).decode()
    os.close(master)

    assert "hello pty" in text
    assert not text.lstrip().startswith("{")


def test_auto_renderer_is_json_when_not_a_terminal(stream: io.StringIO) -> None:
    configure_logging("svc", stream=stream)
    get_logger().info("hello pipe")

    assert json.loads(stream.getvalue())["event"] == "hello pipe"


def test_explicit_renderer_wins_over_detection() -> None:
    terminal, plain = FakeTerminal(), io.StringIO()
    configure_logging("svc", stream=terminal, renderer="json")
    get_logger().info("json on a tty")
    configure_logging("svc", stream=plain, renderer="console")
    get_logger().info("console in a file")

    assert json.loads(terminal.getvalue())["event"] == "json on a tty"
    assert "console in a file" in plain.getvalue()
    assert not plain.getvalue().startswith("{")
    assert "\x1b[" not in plain.getvalue()  # no colour codes when it is not a terminal


def test_stream_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", renderer="json")
    get_logger().info("to stdout")

    assert json.loads(capsys.readouterr().out)["event"] == "to stdout"
