"""A Home Assistant WebSocket API simulator with fault injection, for tests and the demo.

async with Simulator(default_home(), token="t") as sim:
    ...  # connect a client to sim.url; change sim.set_state(...); sim.faults.go_down()
"""

from ruby_hasim.const import HA_VERSION
from ruby_hasim.faults import Faults
from ruby_hasim.home import (
    EntitySpec,
    Home,
    HomeError,
    HomeSpec,
    default_home,
    generate_home,
    load_home,
    parse_home,
)
from ruby_hasim.model import Context, Event, State
from ruby_hasim.server import DEFAULT_TOKEN, Simulator

__all__ = [
    "DEFAULT_TOKEN",
    "HA_VERSION",
    "Context",
    "EntitySpec",
    "Event",
    "Faults",
    "Home",
    "HomeError",
    "HomeSpec",
    "Simulator",
    "State",
    "default_home",
    "generate_home",
    "load_home",
    "parse_home",
]
