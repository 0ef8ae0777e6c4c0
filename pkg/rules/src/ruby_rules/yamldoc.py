"""YAML text to plain values, keeping where each value and key starts.

PyYAML composes the text into nodes, which carry marks; this module turns the nodes into
plain values (dicts, lists, str, int, float, bool, None) itself and records the mark of every
value and every mapping key by its path, such as ``("rules", 0, "triggers", 1, "to")``.

Scalars follow YAML 1.2's core schema where YAML 1.1 surprises people: ``on``, ``off``,
``yes`` and ``no`` stay text (only ``true``/``false`` are booleans), ``22:00`` is text (not the
sexagesimal 1320) and dates stay text. Anchors and aliases work; merge keys (``<<``) are not
supported. Problems that concern one value (a duplicate key, an unsupported tag) are collected
with their path, so the caller can reject just the rule that holds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, TypeAlias

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path: TypeAlias = tuple[str | int, ...]

MAX_NODES: Final = 100_000
"""More nodes than this (an alias bomb, a huge generated file) rejects the whole file."""
MAX_DEPTH: Final = 64
"""Deeper nesting than this is refused (no rule needs it; it guards the recursion)."""
MAX_CHARS: Final = 1_000_000
"""More characters of text than this, counting each alias of a text again, rejects the whole
file: an alias bomb of long texts (``[*big, *big, ...]``) costs nothing to build but a rule's
version and commands would write it out in full."""

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS: Final = frozenset({_TAG + "null", _TAG + "bool", _TAG + "int", _TAG + "float"})


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based line and column."""

    line: int
    column: int


START: Final = Location(1, 1)


def location(mark: yaml.Mark | None) -> Location:
    """The 1-based location of a PyYAML mark (0-based); the file start when there is none."""
    return START if mark is None else Location(mark.line + 1, mark.column + 1)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the value at ``path``, found while reading the YAML."""

    path: Path
    where: Location
    message: str


class YamlError(Exception):
    """The text is not YAML we can read at all; nothing in the file can be used."""

    def __init__(self, where: Location, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


@dataclass
class Document:
    """A YAML document as plain values, with the location of every value and key by path."""

    value: object
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def parse(text: str) -> Document | None:
    """Parse one YAML document; ``None`` when the text holds none. Raises only `YamlError`."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _TooMany as exc:
        raise YamlError(location(exc.mark), exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(location(mark), f"invalid YAML: {_describe(exc)}") from None
    except yaml.reader.ReaderError as exc:
        where = _offset_location(text, exc.position)
        raise YamlError(
            where, f"invalid YAML: character {exc.character!r} is not allowed in YAML text"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(START, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(START, f"invalid YAML: nested deeper than {MAX_DEPTH} levels") from None
    if node is None:
        return None
    builder = _Builder()
    value = builder.build(node, (), 0)
    return Document(value, builder.values, builder.keys, builder.problems)


def _describe(exc: yaml.MarkedYAMLError) -> str:
    parts = [part for part in (exc.context, exc.problem) if part]
    return "; ".join(parts) or "unreadable"


def _offset_location(text: str, offset: int) -> Location:
    before = text[:offset]
    return Location(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


class _TooMany(Exception):  # noqa: N818 - internal; always becomes a YamlError
    def __init__(self, mark: yaml.Mark, message: str) -> None:
        super().__init__(message)
        self.mark, self.message = mark, message


class _Loader(yaml.SafeLoader):
    # Counts nodes while composing, so a huge file of tiny values stops at MAX_NODES instead of
    # being composed whole first (aliases reuse their node: the builder counts their expansion).
    _composed = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._composed += 1
        if self._composed > MAX_NODES:
            message = f"too many values (over {MAX_NODES}); expected a rule file"
            raise _TooMany(self.get_mark(), message)
        return super().compose_node(parent, index)


class _Builder:
    def __init__(self) -> None:
        self.values: dict[Path, Location] = {}
        self.keys: dict[Path, Location] = {}
        self.problems: list[Problem] = []
        self._count = 0
        self._chars = 0
        self._active: set[int] = set()
        self._constructor = SafeConstructor()

    def build(self, node: Node, path: Path, depth: int) -> object:
        where = location(node.start_mark)
        self._count += 1
        if self._count > MAX_NODES:
            raise YamlError(where, f"too many values (over {MAX_NODES}); expected a rule file")
        self.values[path] = where
        if isinstance(node, ScalarNode):
            self._chars += len(node.value)
            if self._chars > MAX_CHARS:
                message = f"too much text (over {MAX_CHARS} characters, each alias counted)"
                raise YamlError(where, f"{message}; expected a rule file")
            return self._scalar(node, path)
        if depth >= MAX_DEPTH:
            self.problems.append(Problem(path, where, f"nested deeper than {MAX_DEPTH} levels"))
            return None
        if id(node) in self._active:
            self.problems.append(Problem(path, where, "an alias refers to its own ancestor"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode) and node.tag == _TAG + "seq":
                return [
                    self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)
                ]
            if isinstance(node, MappingNode) and node.tag == _TAG + "map":
                return self._mapping(node, path, depth)
        finally:
            self._active.discard(id(node))
        self.problems.append(Problem(path, where, f"unsupported YAML tag {node.tag!r}"))
        return None

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, object]:
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            where = location(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self.problems.append(Problem(path, where, "a key must be plain text"))
                continue
            key = key_node.value
            if key in result:
                message = f"duplicate key {key!r}"
                self.problems.append(Problem((*path, key), where, message))
                continue
            self.keys[(*path, key)] = where
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def _scalar(self, node: ScalarNode, path: Path) -> object:
        tag, text = node.tag, node.value
        if tag == _TAG + "str" or tag == _TAG + "timestamp":
            return text
        if tag in (_TAG + "int", _TAG + "float") and ":" in text:
            return text
        if tag == _TAG + "bool" and text.lower() not in ("true", "false"):
            return text
        if tag not in _PLAIN_TAGS:
            where = location(node.start_mark)
            self.problems.append(Problem(path, where, f"unsupported YAML tag {tag!r}"))
            return None
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            where = location(node.start_mark)
            self.problems.append(Problem(path, where, f"unreadable {tag[len(_TAG) :]}: {exc}"))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            where = location(node.start_mark)
            message = f"{text[:20]!r} is not a finite number: expected a number such as 21.5"
            self.problems.append(Problem(path, where, message))
            return None
        return value
