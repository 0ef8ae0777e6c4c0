"""Rules written out in Ruby Core's own format, as ``rubyctl rules import-ha`` writes them.

The text is the validated rule (so it loads back to the same rule, with the same version),
without the settings left at their defaults, durations as ``1h30m`` and times as ``07:30``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time, timedelta
from typing import Final

import yaml

from ruby_rules.ha.source import native_duration
from ruby_rules.model import Rule


def native_yaml(rules: Iterable[Rule]) -> str:
    """A ``rules:`` file holding ``rules``, in order."""
    shown = [
        _plain(rule.config.model_dump(mode="python", by_alias=True, exclude_defaults=True))
        for rule in rules
    ]
    return yaml.safe_dump(
        {"rules": shown}, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


_ONE_OR_MANY: Final = frozenset(
    {"entity_id", "area_id", "device_id", "state", "from", "to", "at", "weekday"}
)
"""Fields that take one value or a list: a list of one is written as the value."""


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: item[0]
            if key in _ONE_OR_MANY
            and isinstance(item, list | tuple)
            and len(item) == 1
            and isinstance(item[0], str)
            else _plain(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, timedelta):
        return native_duration(value.total_seconds())
    if isinstance(value, time):  # a time of day
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    return value
