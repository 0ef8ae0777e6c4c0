"""A small, safe expression language: ``states('sensor.power') | float > 3000``.

An expression is parsed with `ast.parse` and compiled by our own walker into plain closures.
The walker accepts literals, the names, functions and filters of a `Vocabulary`, arithmetic,
comparisons, ``and``/``or``/``not``, ``a if c else b`` and ``.key`` / ``[key]`` reads; any
other syntax is refused. Nothing is handed to ``eval`` or ``exec``, and values are only JSON
data and read-only mappings, so no name, read or call reaches a Python object: an expression
can read, never change, anything. The limits below, and the absence of ``**`` and of ``*`` on
text or lists, keep each evaluation small in time and memory.

Compiling raises `ExpressionError` saying what was expected; so does evaluating
(``int('abc')``, a division by zero...), quoting the expression. `ruby_rules.templates` holds
the vocabulary of rules (``trigger``, ``states()``...) and finds ``{{ expr }}`` in rule values.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from pydantic import JsonValue

from ruby_rules.context import Context
from ruby_rules.operators import (
    BINARY,
    COMPARE,
    SYMBOLS,
    Fault,
    Value,
    is_number,
    kind,
    member,
    number,
    to_json,
    to_text,
)

MAX_SOURCE: Final = 1000
"""Characters in one expression."""
MAX_NODES: Final = 200
"""Syntax-tree nodes in one expression."""
MAX_DEPTH: Final = 32
"""Nesting levels in one expression."""

EXAMPLE: Final = "an expression such as states('sensor.power') | float > 3000"
_CONSTANT_NAMES: dict[str, Value] = {"true": True, "false": False, "none": None, "null": None}


class ExpressionError(ValueError):
    """An expression that does not compile, or failed while evaluating; the message quotes it."""


class Scope:
    """What one evaluation reads: the `Context`, and values derived from it, built once each."""

    __slots__ = ("_derived", "ctx")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._derived: dict[str, Value] = {}

    def derived(self, name: str, build: Callable[[Context], Value]) -> Value:
        """``build(ctx)``, computed on first use within this evaluation."""
        if name not in self._derived:
            self._derived[name] = build(self.ctx)
        return self._derived[name]


Node: TypeAlias = Callable[[Scope], Value]
"""A compiled piece of an expression."""


@dataclass(frozen=True, slots=True)
class Function:
    """A function or filter: ``impl(*args)``, or ``impl(scope, *args)`` if it reads the scope.

    For a filter, the value before ``|`` is the first argument and counts in ``arity``.
    """

    impl: Callable[..., Value]
    arity: tuple[int, int]
    usage: str
    reads_scope: bool = False


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What expressions may name (besides ``true``/``false``/``none``/``null``) and call."""

    names: Mapping[str, Node]
    functions: Mapping[str, Function]
    filters: Mapping[str, Function] = field(default_factory=dict)


# --- compiling ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expression:
    """One compiled expression. Immutable: evaluate it from any thread or task."""

    source: str
    node: Node

    def value(self, scope: Scope) -> JsonValue:
        """The typed result, as fresh JSON data."""
        with self._failures():
            return to_json(self.node(scope))

    def text(self, scope: Scope) -> str:
        """The result as text, for interpolation into a longer text: ``None`` is ``""``."""
        with self._failures():
            value = self.node(scope)
            return "" if value is None else to_text(value)

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (Fault, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
            # Known failures raise a Fault with a clear message; the others are a safety net.
            raise ExpressionError(f"expression {shown(self.source)} failed: {exc}") from None


def shown(source: str) -> str:
    """``'{{ source }}'`` for messages, shortened when long."""
    text = source if len(source) <= 80 else source[:77] + "..."
    return f"'{{{{ {text} }}}}'"


def compile_expression(source: str, vocabulary: Vocabulary) -> Expression:
    """Compile ``source`` (it may span lines); `ExpressionError` says what was expected."""
    text = " ".join(source.strip().splitlines())
    if not text:
        raise ExpressionError(f"empty expression '{{{{ }}}}': expected {EXAMPLE}")
    if len(text) > MAX_SOURCE:
        raise ExpressionError(
            f"invalid expression {shown(text)}: {len(text)} characters; at most {MAX_SOURCE} "
            "allowed"
        )
    try:
        with warnings.catch_warnings():  # an invalid escape in a string literal only warns
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        offset = exc.offset or 0
        where = f"at character {offset}" if 0 < offset <= len(text) else "at the end"
        raise ExpressionError(
            f"invalid expression {shown(text)}: {exc.msg} {where}: expected {EXAMPLE}"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"invalid expression {shown(text)}: {exc}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ExpressionError(
            f"invalid expression {shown(text)}: {nodes} syntax nodes; at most {MAX_NODES} allowed"
        )
    try:
        return Expression(text, _Compiler(text, vocabulary).compile(tree.body, 0))
    except Fault as fault:
        raise ExpressionError(f"invalid expression {shown(text)}: {fault}") from None


@dataclass(frozen=True, slots=True)
class _Compiler:
    source: str
    vocabulary: Vocabulary

    def compile(self, node: ast.expr, depth: int) -> Node:
        """The closure for ``node``: one arm per accepted node type, anything else refused."""
        if depth > MAX_DEPTH:
            raise Fault(f"nested more than {MAX_DEPTH} levels deep")

        def sub(child: ast.expr) -> Node:
            return self.compile(child, depth + 1)

        match node:
            case ast.Constant(value=value) if value is None or isinstance(value, bool | str):
                return _constant(value)
            case ast.Constant(value=value) if is_number(value):
                return _constant(number(value))
            case ast.Name(id=name):
                return self._name(name)
            case ast.List(elts=elements) | ast.Tuple(elts=elements):
                items = [sub(element) for element in elements]
                return lambda scope: [item(scope) for item in items]
            case ast.Dict(keys=keys, values=values) if None not in keys:
                pairs = [
                    (sub(key), sub(value))
                    for key, value in zip(keys, values, strict=True)
                    if key is not None
                ]
                return lambda scope: _mapping(pairs, scope)
            case ast.BinOp(left=left, op=ast.BitOr(), right=right):
                return self._filter(sub(left), right, depth + 1)
            case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY:
                apply, a, b = BINARY[type(op)], sub(left), sub(right)
                return lambda scope: apply(a(scope), b(scope))
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                inner = sub(operand)
                return lambda scope: not inner(scope)
            case ast.UnaryOp(op=ast.USub() | ast.UAdd() as op, operand=operand):
                return _signed(sub(operand), negate=isinstance(op, ast.USub))
            case ast.BoolOp(op=op, values=values):
                return _logic([sub(value) for value in values], isinstance(op, ast.And))
            case ast.Compare(left=left, ops=ops, comparators=rights) if all(
                type(op) in COMPARE for op in ops
            ):
                tests = [COMPARE[type(op)] for op in ops]
                return _comparison(sub(left), list(zip(tests, map(sub, rights), strict=True)))
            case ast.IfExp(test=test, body=body, orelse=orelse):
                cond, then, otherwise = sub(test), sub(body), sub(orelse)
                return lambda scope: then(scope) if cond(scope) else otherwise(scope)
            case ast.Attribute(value=value, attr=attr) if not attr.startswith("_"):
                container = sub(value)
                return lambda scope: member(container(scope), attr, f"'.{attr}'")
            case ast.Subscript(value=value, slice=key) if not isinstance(key, ast.Slice):
                container, index = sub(value), sub(key)
                return lambda scope: member(container(scope), index(scope), "'[...]'")
            case ast.Call(func=ast.Name(id=name), args=args, keywords=keywords):
                return self._function(name, [sub(arg) for arg in args], bool(keywords))
        raise self._refused(node)

    def _refused(self, node: ast.expr) -> Fault:
        match node:
            case ast.Attribute(attr=attr):
                return Fault(f"names starting with '_' are not allowed ('.{attr}')")
            case ast.Call():
                return Fault(
                    "only functions such as states(...) can be called, not methods: "
                    "expected a filter such as x | upper instead of x.upper()"
                )
            case ast.Constant(value=value):
                return Fault(f"the literal {value!r} is not supported: expected a number or text")
            case ast.BinOp(op=op) | ast.UnaryOp(op=op) if type(op) in SYMBOLS:
                return Fault(f"{SYMBOLS[type(op)]} is not supported")
            case ast.Compare(ops=ops):
                symbol = next(SYMBOLS[type(op)] for op in ops if type(op) not in COMPARE)
                return Fault(
                    f"{symbol} is not supported: expected ==, !=, <, <=, >, >=, in, not in"
                )
        text = ast.get_source_segment(self.source, node) or type(node).__name__
        return Fault(f"{text[:60]!r} is not supported: expected {EXAMPLE}")

    def _name(self, name: str) -> Node:
        if name in _CONSTANT_NAMES:
            return _constant(_CONSTANT_NAMES[name])
        if name in self.vocabulary.names:
            return self.vocabulary.names[name]
        if name in self.vocabulary.functions:
            usage = self.vocabulary.functions[name].usage
            raise Fault(f"function {name!r} must be called: expected {usage}")
        names = ", ".join(self.vocabulary.names)
        example = next(iter(self.vocabulary.functions), "f")
        raise Fault(
            f"unknown name {name!r}: expected {names}, or a function such as {example}(...)"
        )

    def _function(self, name: str, args: list[Node], named: bool) -> Node:
        function = self.vocabulary.functions.get(name)
        if function is None:
            known = ", ".join(self.vocabulary.functions)
            raise Fault(f"function {name!r} is not allowed: expected one of {known}")
        if named:
            raise Fault(f"{name}() takes no named arguments: expected {function.usage}")
        return _call(name, function, args)

    def _filter(self, value: Node, right: ast.expr, depth: int) -> Node:
        match right:
            case ast.Name(id=name):
                args: list[Node] = []
            case ast.Call(func=ast.Name(id=name), args=call_args, keywords=[]):
                args = [self.compile(arg, depth + 1) for arg in call_args]
            case _:
                raise Fault(
                    "expected a filter after '|', such as x | int or x | round(1) "
                    "('|' binds looser than '+' or '*': use parentheses)"
                )
        function = self.vocabulary.filters.get(name)
        if function is None:
            known = ", ".join(self.vocabulary.filters)
            raise Fault(f"unknown filter {name!r}: expected one of {known}")
        return _call(name, function, [value, *args])


def _constant(value: Value) -> Node:
    return lambda scope: value


def _mapping(pairs: list[tuple[Node, Node]], scope: Scope) -> Value:
    result: dict[str, Value] = {}
    for key_node, value_node in pairs:
        key = key_node(scope)
        if not isinstance(key, str):
            raise Fault(f"a mapping key must be text; got {kind(key)}")
        result[key] = value_node(scope)
    return result


def _signed(inner: Node, *, negate: bool) -> Node:
    def sign(scope: Scope) -> Value:
        value = inner(scope)
        if not is_number(value):
            raise Fault(f"a sign needs a number; got {kind(value)}")
        return -value if negate else value

    return sign


def _logic(parts: list[Node], conjunction: bool) -> Node:
    # Python's (and Jinja's) rule: the value of the operand that decides, short-circuiting.
    def combine(scope: Scope) -> Value:
        value: Value = None
        for part in parts:
            value = part(scope)
            if bool(value) is not conjunction:
                return value
        return value

    return combine


def _comparison(first: Node, rest: list[tuple[Callable[[Value, Value], bool], Node]]) -> Node:
    def compare(scope: Scope) -> Value:
        left = first(scope)
        for test, node in rest:
            right = node(scope)
            if not test(left, right):
                return False
            left = right
        return True

    return compare


def _call(name: str, function: Function, args: list[Node]) -> Node:
    low, high = function.arity
    if not low <= len(args) <= high:
        raise Fault(f"wrong number of arguments for {name!r}: expected {function.usage}")
    impl = function.impl
    if function.reads_scope:
        return lambda scope: impl(scope, *(arg(scope) for arg in args))
    return lambda scope: impl(*(arg(scope) for arg in args))
