"""A value that must never be printed: an NKEY seed, a token, an AppRole secret id.

``Secret`` keeps the value out of ``repr``, ``str``, f-strings and the logs that render them;
code that needs the value calls ``reveal()`` at the one place it is used. It is the first line
of defence; the log redaction (``ruby_runtime.redaction``) is the second.
"""

from __future__ import annotations

from typing import Final, NoReturn

from ruby_runtime.redaction import REDACTED

__all__ = ["Secret"]

_HIDDEN: Final = f"'{REDACTED}'"


class Secret:
    """An immutable secret string with a name that may be shown (``nats seed of gateway``)."""

    __slots__ = ("_name", "_value")
    _name: str
    _value: str

    def __init__(self, value: str, name: str = "secret") -> None:
        if not isinstance(value, str):
            raise TypeError(f"{name}: a Secret holds a str")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_name", name)

    @property
    def name(self) -> str:
        return self._name

    def reveal(self) -> str:
        """The value itself: pass it on at once, never store, format or log it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._name!r}, value={_HIDDEN})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")
