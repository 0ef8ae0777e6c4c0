"""Rule lifecycle events published by the engine."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ruby_schemas.base import Contract, Payload
from ruby_schemas.primitives import Id, Identifier, JsonObject, MessageId, NonEmptyStr


class RuleError(Contract):
    """One problem found in a rule file, located as precisely as the parser can."""

    file: NonEmptyStr
    """The rule file, relative to the rules directory."""
    line: int | None = Field(default=None, ge=1)
    """1-based line of the problem; `None` when it concerns the whole file."""
    column: int | None = Field(default=None, ge=1)
    """1-based column of the problem; `None` when unknown."""
    message: NonEmptyStr
    """What is wrong, in words."""


class RuleLoadedV1(Payload):
    """A rule was compiled and attached; it now reacts to events."""

    TYPE: ClassVar[str] = "rule.loaded.v1"

    rule_id: Identifier
    """The rule's id (one subject token)."""
    rule_version: NonEmptyStr
    """A hash of the rule's canonical content; changes whenever the rule does."""
    file: NonEmptyStr
    """The rule file, relative to the rules directory."""
    replaced_version: str | None = None
    """The version this one replaced on a reload, if any."""


class RuleRejectedV1(Payload):
    """A rule file (or one rule in it) failed validation; the last good version keeps running."""

    TYPE: ClassVar[str] = "rule.rejected.v1"

    file: NonEmptyStr
    """The rule file, relative to the rules directory."""
    rule_id: Identifier | None = None
    """The rule's id, when it could be read."""
    rule_version: str | None = None
    """The hash of the rejected content, when it could be computed."""
    kept_version: str | None = None
    """The last good version still running, if any."""
    errors: tuple[RuleError, ...] = Field(min_length=1)
    """Every problem found, in file order."""


class RuleFiredV1(Payload):
    """A rule's trigger matched and its conditions held; its actions were started."""

    TYPE: ClassVar[str] = "rule.fired.v1"

    rule_id: Identifier
    """The rule's id."""
    rule_version: NonEmptyStr
    """The version that fired."""
    file: NonEmptyStr
    """The rule file, relative to the rules directory."""
    trigger_id: NonEmptyStr
    """Which of the rule's triggers matched."""
    command_ids: tuple[Id, ...] = ()
    """The ids of the commands the run published, in order."""
    run_id: str | None = None
    """The run's id, derived from rule, version, trigger and triggering message."""
    trigger_event_id: MessageId | None = None
    """The id of the message that fired the trigger (its envelope id): the link back."""


class RuleEventV1(Payload):
    """An event a rule published (the ``publish`` action), for other rules and services."""

    TYPE: ClassVar[str] = "rule.event.v1"

    rule_id: Identifier
    """The publishing rule's id."""
    rule_version: NonEmptyStr
    """The version that published it."""
    event_type: Identifier
    """The event's type, as the rule names it."""
    data: JsonObject = Field(default_factory=dict)
    """The event's data."""


class RuleFailedV1(Payload):
    """A rule run raised an error; other rules are unaffected."""

    TYPE: ClassVar[str] = "rule.failed.v1"

    rule_id: Identifier
    """The rule's id."""
    rule_version: NonEmptyStr
    """The version that failed."""
    file: NonEmptyStr
    """The rule file, relative to the rules directory."""
    stage: NonEmptyStr
    """Where it failed: `trigger`, `condition`, `action` or `timer`."""
    error_type: NonEmptyStr
    """The kind of error, such as the exception class name."""
    error_message: str
    """What went wrong, in words."""


class RuleUnloadedV1(Payload):
    """A rule was detached and no longer reacts to events."""

    TYPE: ClassVar[str] = "rule.unloaded.v1"

    rule_id: Identifier
    """The rule's id."""
    rule_version: NonEmptyStr
    """The version that was unloaded."""
    file: NonEmptyStr
    """The rule file, relative to the rules directory."""
    reason: NonEmptyStr
    """Why: `removed` (deleted from its file), `disabled`, or `shutdown`."""
