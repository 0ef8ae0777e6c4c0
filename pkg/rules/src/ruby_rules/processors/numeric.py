"""The ``above`` / ``below`` range shared by the numeric trigger and condition."""

from __future__ import annotations

import math
from typing import Self

from pydantic import model_validator

from ruby_rules.processors.base import ProcessorConfig
from ruby_rules.processors.types import Number


class NumericRange(ProcessorConfig):
    """``above`` and/or ``below`` bounds (both exclusive); at least one is required."""

    above: Number | None = None
    """The value must be greater than this."""
    below: Number | None = None
    """The value must be less than this."""

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.above is None and self.below is None:
            raise ValueError("expected 'above', 'below' or both")
        if self.above is not None and self.below is not None and self.above >= self.below:
            raise ValueError(f"'above' ({self.above}) must be less than 'below' ({self.below})")
        return self

    def within(self, value: str | None) -> bool:
        """Whether ``value`` parses as a finite number strictly inside the range."""
        try:
            number = float(value) if value is not None else math.nan
        except ValueError:
            return False
        if not math.isfinite(number):
            return False
        return (self.above is None or number > self.above) and (
            self.below is None or number < self.below
        )
