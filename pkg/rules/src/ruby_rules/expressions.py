"""The error of a template in a rule value: it does not compile, or it failed when rendered.

Templates are Home Assistant's Jinja templates (ADR-0028), compiled and rendered by
`ruby_rules.templates` on `ruby_rules.jinja`; this module holds what their users catch.
"""

from __future__ import annotations


class ExpressionError(ValueError):
    """A template that does not compile, or failed while rendering; the message quotes it.

    A `ValueError`, so that in a config field pydantic reports it at its place in the rule
    file, and so that the engine fails the run with it as the reason.
    """


def shown(source: str) -> str:
    """``source`` quoted for a message, on one line and shortened when long."""
    text = " ".join(source.split())
    text = text if len(text) <= 80 else text[:77] + "..."
    return repr(text)
