"""Base classes: our own messages are frozen and refuse unknown fields."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A model of ours: immutable, and a field it does not declare is a validation error.

    A float field refuses NaN and ±Infinity (JSON has no such numbers)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False
    )


class Payload(Contract):
    """The typed `data` of an envelope; each concrete payload declares its versioned `TYPE`."""

    TYPE: ClassVar[str]
    """The envelope `type` this payload travels under, such as `ha.state_changed.v1`."""
