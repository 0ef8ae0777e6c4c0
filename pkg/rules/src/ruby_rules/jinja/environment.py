"""Home Assistant's template language on Jinja2's immutable sandbox, bounded in cost.

`compile_template` parses a template once, when its rule loads, and refuses at that moment
what can never work: a syntax error (with its line), a private name (``''.__class__``), a
function Ruby Core does not support yet (``area_entities``), loading other templates,
recursive loops, nesting deeper than `MAX_NESTING`, and an operation on constants that would
exceed the budget (``2 ** 100000``). Before Jinja generates code, the tree is rewritten so
that each loop iteration, each piece of literal text and each ``~`` passes a checkpoint of
the render's `ruby_rules.jinja.budget.Budget`; arithmetic operators are intercepted (never
folded at compile time), and calls are counted and nested at most
`ruby_rules.jinja.budget.MAX_DEPTH` deep.

`render_text` runs a compiled template for one run and returns its text; any failure,
including a budget exceeded, is a `TemplateFailure` whose message says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from jinja2 import TemplateError, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from ruby_rules.context import Context
from ruby_rules.jinja import regexes, scope
from ruby_rules.jinja.budget import MAX_VALUE, Budget, LimitExceeded, current, nested, rendering
from ruby_rules.jinja.guards import (
    BINOPS,
    check_brace_format,
    checked_method_call,
    is_builtin_method,
    method_allowed,
    sized,
    text_of,
)
from ruby_rules.jinja.states import trigger_record
from ruby_rules.jinja.vocabulary import FILTERS, GLOBALS, NOT_SUPPORTED, TESTS

MAX_SOURCE: Final = 10_000
"""Characters of one template."""
MAX_NESTING: Final = 64
"""Levels of the template's syntax tree (expressions in expressions, blocks in blocks)."""
_EACH, _TEXT, _CONCAT = "_ruby_each", "_ruby_text", "_ruby_concat"
_RUN_NAMES: Final = frozenset({"trigger"})
_CALLABLE_TYPES: Final = (dict, Namespace, timedelta)
"""The only classes a template may call (to build a value); any other class is refused."""


class TemplateFailure(Exception):  # noqa: N818 - the caller words it as an ExpressionError
    """A template that does not compile, or failed while rendering; the message says why."""


@pass_context
def _each(context: JinjaContext, iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current()
    for item in iterable:
        budget.step()
        yield item


@pass_context
def _text(context: JinjaContext, text: str) -> str:
    current().build(len(text))
    return text


@pass_context
def _concat(context: JinjaContext, parts: list[Any]) -> str:
    texts = [text_of(part) for part in parts]
    current().build(sum(len(text) for text in texts))
    return "".join(texts)


def _finalize(value: Any) -> str:
    text = text_of(value)
    current().build(len(text))
    return text


class RulesEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with Home Assistant's vocabulary and our cost checks."""

    intercepted_binops = frozenset(BINOPS)

    def __init__(self) -> None:
        super().__init__(
            autoescape=False,
            finalize=_finalize,
            cache_size=0,
            extensions=["jinja2.ext.loopcontrols"],  # {% break %}, {% continue %}, as in HA
        )
        self.globals = dict(GLOBALS)
        self.filters = {**FILTERS, _EACH: _each, _TEXT: _text, _CONCAT: _concat}
        self.tests = dict(TESTS)

    def call_binop(self, context: JinjaContext, operator: str, left: Any, right: Any) -> Any:
        """Every arithmetic operator, checked before it builds anything."""
        current().step()
        return BINOPS[operator](left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """The sandbox's rule, and only the methods `method_allowed` lists."""
        return super().is_safe_attribute(obj, attr, value) and method_allowed(obj, attr)

    def call(__self, __context: JinjaContext, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature: the names must not collide with keyword arguments
        """A call from the template: counted, nested at most `MAX_DEPTH`, result measured."""
        if not __self.is_safe_callable(__obj) or (
            isinstance(__obj, type) and __obj not in _CALLABLE_TYPES
        ):
            raise SecurityError(f"{__obj!r} is not safely callable")
        with nested():
            if is_builtin_method(__obj):
                return checked_method_call(__obj, args, kwargs)
            return sized(__context.call(__obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        """``'{}'.format(x)``: the sandbox's formatter, with widths checked first."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        check_brace_format(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            for arg in (*args, *kwargs.values()):
                text_of(arg)  # '{}'.format([big] * 60000) is refused before it is built
            result = wrapper(*args, **kwargs)
            current().build(len(result))
            return str(result)

        return checked


ENVIRONMENT: Final = RulesEnvironment()


@dataclass(frozen=True, slots=True)
class Compiled:
    """One compiled template. Immutable: render it from any thread or task."""

    source: str
    template: Any


def compile_template(source: str) -> Compiled:
    """Parse, check and compile ``source``; `TemplateFailure` says what is wrong, and where."""
    if len(source) > MAX_SOURCE:
        raise TemplateFailure(f"{len(source):,} characters; at most {MAX_SOURCE:,} allowed")
    try:
        tree = ENVIRONMENT.parse(source)
        _check(tree)
        _rewrite(tree)
        template = ENVIRONMENT.from_string(tree)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f"line {line}: " if line else ""
        raise TemplateFailure(f"{where}{exc.message or type(exc).__name__}") from None
    except LimitExceeded as exc:
        raise TemplateFailure(str(exc)) from None
    except (RecursionError, MemoryError):  # Jinja's parser recurses before _check can count
        raise TemplateFailure(f"nested more than {MAX_NESTING} levels deep") from None
    except SyntaxError:  # Python's compiler: at most 20 loops (or blocks) in one another
        raise TemplateFailure("nested too deeply to compile: at most 20 loops in loops") from None
    return Compiled(source, template)


def render_text(compiled: Compiled, ctx: Context) -> str:
    """The text ``compiled`` renders for the run ``ctx``; `TemplateFailure` if it fails."""
    budget = Budget()
    try:
        with scope.running(ctx), rendering(budget):
            names = {**ctx.names, **GLOBALS, **ctx.variables, "trigger": trigger_record(ctx)}
            context = compiled.template.new_context(names, shared=True)
            return _joined(compiled.template.root_render_func(context))
    except TemplateFailure:
        raise
    except Exception as exc:  # any failure of a template fails its run, with the reason
        raise TemplateFailure(_reason(exc)) from None


def _joined(pieces: Iterable[str]) -> str:
    collected, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_VALUE:
            raise LimitExceeded(f"the output has more than {MAX_VALUE:,} characters")
        collected.append(piece)
    return "".join(collected)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "calls nested too deep"
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- load-time checks -----------------------------------------------------------------------


def _fail(node: nodes.Node, message: str) -> TemplateError:
    error = TemplateError(message)
    error.lineno = node.lineno  # type: ignore[attr-defined]  # only its subclasses declare one
    return error


def _check(tree: nodes.Template) -> None:
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _fail(node, f"nested more than {MAX_NESTING} levels deep")
        _check_node(node)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    known = GLOBALS.keys() | _RUN_NAMES
    undeclared = find_undeclared_variables(tree)  # after the checks: it compiles the tree
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in undeclared - known:
            raise _fail(call, f"unknown function {call.node.name!r}")


def _check_node(node: nodes.Node) -> None:
    match node:
        case nodes.Extends() | nodes.Include() | nodes.Import() | nodes.FromImport():
            raise _fail(node, "a rule's template cannot load other templates")
        case nodes.For(recursive=True):
            raise _fail(node, "recursive loops are not supported")
        case nodes.Getattr(attr=name) | nodes.Name(name=name) if name.startswith("_"):
            raise _fail(node, f"names starting with '_' are not allowed ({name!r})")
        case nodes.Getitem(arg=nodes.Const(value=str() as name)) if name.startswith("_"):
            raise _fail(node, f"names starting with '_' are not allowed ({name!r})")
        case nodes.Name(name=name) | nodes.Filter(name=name) | nodes.Test(name=name) if (
            name in NOT_SUPPORTED
        ):
            raise _fail(node, f"{name!r} is not supported yet: {NOT_SUPPORTED[name]}")
        case (
            nodes.Filter(name=name, args=[nodes.Const(value=str() as pattern), *_])
            | nodes.Test(name=name, args=[nodes.Const(value=str() as pattern), *_])
        ) if name in regexes.FILTERS or name in regexes.TESTS:
            try:
                regexes.compiled_pattern(pattern)
            except (LimitExceeded, ValueError) as exc:
                raise _fail(node, str(exc)) from None
        case nodes.BinExpr(left=left, right=right, operator=operator) if operator in BINOPS:
            _check_constants(node, operator, left, right)


def _check_constants(node: nodes.Node, operator: str, left: nodes.Expr, right: nodes.Expr) -> None:
    """Refuse now an operation on constants that could never pass the budget."""
    eval_ctx = nodes.EvalContext(ENVIRONMENT)
    try:
        BINOPS[operator](left.as_const(eval_ctx), right.as_const(eval_ctx))
    except LimitExceeded as exc:
        raise _fail(node, str(exc)) from None
    except Exception:  # noqa: S110 - not constant, or a failure of the run's, later
        pass


def _rewrite(tree: nodes.Template) -> None:
    """Route loops, literal text and ``~`` through the budget's checkpoints."""
    for loop in tree.find_all(nodes.For):
        loop.iter = _filter(_EACH, loop.iter)
    for output in tree.find_all(nodes.Output):
        output.nodes = [
            _filter(_TEXT, nodes.Const(child.data, lineno=child.lineno))
            if isinstance(child, nodes.TemplateData)
            else child
            for child in output.nodes
        ]
    for concat in list(tree.find_all(nodes.Concat)):
        parts = nodes.List(concat.nodes, lineno=concat.lineno)
        concat.nodes = [_filter(_CONCAT, parts)]


def _filter(name: str, node: nodes.Node) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
