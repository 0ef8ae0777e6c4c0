"""Imports every built-in processor kind, which registers it in `REGISTRY`.

A new kind: add its module under ``triggers/``, ``conditions/`` or ``actions/`` and list it here.
"""

from __future__ import annotations

from ruby_rules.processors.actions import (
    branch,
    call,
    delay,
    fire_event,
    publish,
    repeat,
    sequence,
    stop,
    variables,
    wait_for,
    wait_template,
)
from ruby_rules.processors.conditions import expression, logic, numeric_state
from ruby_rules.processors.conditions import state as state_condition
from ruby_rules.processors.conditions import sun as sun_condition
from ruby_rules.processors.conditions import time as time_condition
from ruby_rules.processors.conditions import trigger as trigger_condition
from ruby_rules.processors.conditions import zone as zone_condition
from ruby_rules.processors.triggers import (
    event,
    homeassistant,
    sun,
    time,
    time_pattern,
    webhook,
    zone,
)
from ruby_rules.processors.triggers import numeric_state as numeric_state_trigger
from ruby_rules.processors.triggers import state as state_trigger
from ruby_rules.processors.triggers import template as template_trigger

MODULES = (
    state_trigger,
    numeric_state_trigger,
    event,
    homeassistant,
    time,
    time_pattern,
    template_trigger,
    sun,
    zone,
    webhook,
    state_condition,
    numeric_state,
    time_condition,
    trigger_condition,
    sun_condition,
    zone_condition,
    logic,
    expression,
    call,
    delay,
    wait_for,
    wait_template,
    branch,
    publish,
    fire_event,
    stop,
    variables,
    sequence,
    repeat,
)
"""The modules of the built-in kinds (imported for their registrations)."""
