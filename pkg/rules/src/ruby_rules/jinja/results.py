"""Home Assistant's typed results: the text a template renders, read back as a value.

Home Assistant renders every template to text, strips it, and reads the text as a Python
literal when it is one: ``21.5`` becomes a number, ``True`` a bool, ``None`` nothing,
``[1, 2]`` a list, ``{'a': 1}`` a mapping. Text stays text, and so do numbers written in a
way a person would not (``1e3``, ``0123``, ``1_000``). `typed` does the same and returns
JSON data; what JSON cannot hold (bytes, complex, infinity) stays the text it was.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from typing import Any, Final

from pydantic import JsonValue

_IS_NUMERIC: Final = re.compile(r"^[+-]?(?!0\d)\d*(?:\.\d*)?$")


class _NotJson(Exception):  # noqa: N818 - internal: the text is kept as it is
    pass


def typed(rendered: str) -> JsonValue:
    """The value Home Assistant reads from ``rendered`` (stripped), as JSON data."""
    text = rendered.strip()
    try:
        with warnings.catch_warnings():  # "1abc" is text, not a warning on the engine's stderr
            warnings.simplefilter("ignore", SyntaxWarning)
            result = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(result, str | complex | bytes):
        return text
    if (
        isinstance(result, int | float)
        and not isinstance(result, bool)
        and _IS_NUMERIC.match(text) is None
    ):
        return text
    try:
        return _json(result)
    except (_NotJson, RecursionError):
        return text


def _json(value: Any) -> JsonValue:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson
        return value
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(item) for item in value]
    raise _NotJson
