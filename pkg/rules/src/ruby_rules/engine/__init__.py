"""The rule engine's logic, without NATS: triggers to runs, runs to commands, durable timers.

`RuleEngine` is driven by its caller (the engine service, `rubyctl rules test|replay`): it is
handed events and the time, and returns `Effects` (commands, events, timer records to store or
delete, traces) for the caller to apply. The same code decides in production and in a test.
"""

from ruby_rules.engine.core import RuleEngine
from ruby_rules.engine.effects import Effects
from ruby_rules.engine.records import (
    AtTimer,
    ForTimer,
    QueuedRun,
    RecordError,
    RunTimer,
    TimerRecord,
    WaitingRun,
    read_record,
)

__all__ = [
    "AtTimer",
    "Effects",
    "ForTimer",
    "QueuedRun",
    "RecordError",
    "RuleEngine",
    "RunTimer",
    "TimerRecord",
    "WaitingRun",
    "read_record",
]
