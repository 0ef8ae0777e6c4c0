"""What a template reads, told from its syntax tree once, when its rule loads.

A template trigger (or a ``wait_template``) must be offered the state changes that can change
its result. `reads` walks the Jinja tree of a template and collects the entity ids it names
literally: ``states('x.y')``, ``is_state('x.y', ...)``, ``state_attr('x.y', ...)``,
``is_state_attr``, ``has_value``, the same as filters and tests (``'x.y' | states``),
``states.x.y``, ``states['x.y']`` and ``expand('x.y', ...)`` of literals that are not groups
or zones. Anything it cannot tell (an id built at run time, ``states | selectattr(...)``
over every entity, ``states.light`` over a domain, ``expand('group.x')`` whose members may
change) makes ``entities`` None: every change must be offered. It also says whether the
template reads the clock (``now()``...) or the run's ``trigger``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from jinja2 import nodes

from ruby_rules.jinja.environment import ENVIRONMENT

ENTITY_FUNCTIONS: Final = frozenset(
    {"states", "is_state", "state_attr", "is_state_attr", "has_value"}
)
"""Functions (also filters and tests) whose first argument is an entity id."""
CLOCK: Final = frozenset({"now", "utcnow", "today_at", "relative_time"})
"""Functions whose result depends on the time of the render."""
_GROUPS: Final = ("group.", "zone.")
"""`expand` of these reads members that can change: not a fixed set of entities."""


@dataclass(frozen=True, slots=True)
class Reads:
    """What one template reads."""

    entities: tuple[str, ...] | None
    """The entity ids it names, sorted; None when it may read others (or every entity)."""
    clock: tuple[str, ...]
    """The functions reading the clock it calls (``now``...), sorted; () if none."""
    trigger: bool
    """Whether it reads ``trigger``."""


@functools.lru_cache(maxsize=1024)
def reads(source: str) -> Reads:
    """What ``source`` (a template that compiles) reads; parses it once more (cached)."""
    walk = _Walk()
    walk.visit(ENVIRONMENT.parse(source))
    entities = None if walk.unknown else tuple(sorted(walk.entities))
    return Reads(entities, tuple(sorted(walk.clock)), walk.trigger)


def _literal(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str) and "." in node.value:
        return node.value.strip().lower()
    return None


class _Walk:
    def __init__(self) -> None:
        self.entities: set[str] = set()
        self.clock: set[str] = set()
        self.trigger = False
        self.unknown = False

    def visit(self, node: nodes.Node) -> None:
        if not self._known(node):
            for child in node.iter_child_nodes():
                self.visit(child)

    def _entity(self, node: nodes.Node) -> None:
        entity = _literal(node)
        if entity is None:
            self.unknown = True
            self.visit(node)
        else:
            self.entities.add(entity)

    def _rest(self, *children: nodes.Node | None) -> None:
        for child in children:
            if child is not None:
                self.visit(child)

    def _known(self, node: nodes.Node) -> bool:
        """Handle ``node`` if it is a form that names entities; False to walk its children."""
        match node:
            case nodes.Getattr(node=nodes.Getattr(node=nodes.Name(name="states"), attr=domain),
                               attr=object_id):  # fmt: skip
                self.entities.add(f"{domain}.{object_id}".lower())
                return True
            case nodes.Getitem(node=nodes.Getattr(node=nodes.Name(name="states"), attr=domain),
                               arg=nodes.Const(value=str() as object_id)):  # fmt: skip
                self.entities.add(f"{domain}.{object_id}".lower())
                return True
            case nodes.Getitem(node=nodes.Name(name="states"), arg=arg) if _literal(arg):
                self._entity(arg)
                return True
            case nodes.Call(node=nodes.Name(name=name), args=[first, *rest]) if (
                name in ENTITY_FUNCTIONS
            ):
                self._entity(first)
                self._rest(*rest, *node.kwargs, node.dyn_args, node.dyn_kwargs)
                return True
            case (
                nodes.Filter(node=nodes.Node() as first, name=name)
                | nodes.Test(node=nodes.Node() as first, name=name)
            ) if name in ENTITY_FUNCTIONS:
                self._entity(first)
                self._rest(*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs)
                return True
            case nodes.Call(node=nodes.Name(name="expand")):
                self._expand(node)
                return True
            case nodes.Name(name=name) if name in CLOCK:
                self.clock.add(name)
            case nodes.Name(name="trigger"):
                self.trigger = True
            case nodes.Name(name=name) if name in ENTITY_FUNCTIONS or name == "expand":
                self.unknown = True  # used some other way: over every entity, or passed on
        return False

    def _expand(self, call: nodes.Call) -> None:
        items: list[nodes.Node] = []
        for arg in call.args:
            items += arg.items if isinstance(arg, nodes.List | nodes.Tuple) else [arg]
        for item in items:
            entity = _literal(item)
            if entity is None or entity.startswith(_GROUPS):
                self.unknown = True
                self.visit(item)
            else:
                self.entities.add(entity)
        if call.kwargs or call.dyn_args or call.dyn_kwargs:
            self.unknown = True
