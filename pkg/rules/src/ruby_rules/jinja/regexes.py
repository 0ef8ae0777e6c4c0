"""Regular expressions, as Home Assistant's ``regex_*`` filters and ``match``/``search`` tests.

Python's ``re`` cannot be interrupted: ``(x+x+)+y`` against 5,000 ``x`` runs for ages inside
one C call. The `regex` package matches with a ``timeout``, and each match here gets what is
left of the render's wall-clock budget, so a catastrophic pattern fails its run in time.
Compiling is bounded before it starts: a pattern has at most `MAX_PATTERN` characters and
its counted repetitions multiply to at most `MAX_REPEATS` (``(a{1000}){1000}`` takes
seconds and gigabytes to compile). Patterns are compiled once and cached.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, Final

import regex  # type: ignore[import-untyped]  # no stubs; used through the four calls below

from ruby_rules.jinja.budget import MAX_VALUE, LimitExceeded, current
from ruby_rules.jinja.guards import text_of

MAX_PATTERN: Final = 200
"""Characters of one pattern."""
MAX_REPEATS: Final = 1_000
"""The product of a pattern's counted repetitions (``{n}``, ``{n,m}``)."""
_COUNTS: Final = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


@functools.lru_cache(maxsize=256)
def compiled_pattern(pattern: str, ignorecase: bool = False) -> Any:
    """``pattern`` compiled, if within the bounds; `LimitExceeded` or `ValueError` if not."""
    if len(pattern) > MAX_PATTERN:
        raise LimitExceeded(f"a regular expression has at most {MAX_PATTERN} characters")
    counts = [max(int(low or 0), int(high or 0)) for low, high in _COUNTS.findall(pattern)]
    if math.prod(max(count, 1) for count in counts) > MAX_REPEATS:
        raise LimitExceeded(
            f"the counted repetitions of a regular expression multiply to at most {MAX_REPEATS:,}"
        )
    try:
        return regex.compile(pattern, regex.IGNORECASE if ignorecase else 0)
    except regex.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def _run(find: Any, ignorecase: Any, method: str, *args: Any) -> Any:
    pattern = compiled_pattern(text_of(find), bool(ignorecase))
    try:
        return getattr(pattern, method)(*args, timeout=current().remaining())
    except TimeoutError:
        raise LimitExceeded("a regular expression ran past the template's time budget") from None


def regex_match(value: Any, find: Any = "", ignorecase: Any = False) -> bool:
    """Whether ``find`` matches at the start of ``value``."""
    return bool(_run(find, ignorecase, "match", text_of(value)))


def regex_search(value: Any, find: Any = "", ignorecase: Any = False) -> bool:
    """Whether ``find`` matches anywhere in ``value``."""
    return bool(_run(find, ignorecase, "search", text_of(value)))


def regex_findall(value: Any, find: Any = "", ignorecase: Any = False) -> list[Any]:
    """Every match of ``find`` in ``value``."""
    return list(_run(find, ignorecase, "findall", text_of(value)))


def regex_findall_index(value: Any, find: Any = "", index: int = 0, ignorecase: Any = False) -> Any:
    """The match number ``index`` of ``find`` in ``value``."""
    return regex_findall(value, find, ignorecase)[index]


def regex_replace(
    value: Any = "", find: Any = "", replace: Any = "", ignorecase: Any = False
) -> str:
    """``value`` with every match of ``find`` replaced (``\\1`` and ``\\g<name>`` work)."""
    text, template = text_of(value), text_of(replace)
    size = len(text)
    budget = current()

    def expand(match: Any) -> str:
        nonlocal size
        piece: str = match.expand(template)
        size += len(piece) - (match.end() - match.start())
        if size > MAX_VALUE:
            raise LimitExceeded(f"the replaced text would have more than {MAX_VALUE:,} characters")
        budget.step()
        return piece

    result: str = _run(find, ignorecase, "sub", expand, text)
    return result


FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "regex_match": regex_match,
    "regex_search": regex_search,
    "regex_findall": regex_findall,
    "regex_findall_index": regex_findall_index,
    "regex_replace": regex_replace,
}
TESTS: Final[dict[str, Callable[..., Any]]] = {"match": regex_match, "search": regex_search}
