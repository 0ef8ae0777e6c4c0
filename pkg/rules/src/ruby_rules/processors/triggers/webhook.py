"""``webhook``: someone called ``POST /api/v1/webhooks/<webhook_id>`` (ADR-0037).

The gateway publishes each call as an ``api.webhook.v1``; the engine offers it to the
triggers as an event of type ``webhook.<webhook_id>`` (`ruby_schemas.webhooks`), which no bus
event can have (a rule's event types are subject tokens: no dots). Every call passed the edge
with a ``control`` token: unlike Home Assistant's, a webhook here is never anonymous.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, JsonValue

from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_schemas.webhooks import (
    WEBHOOK_ID_HINT,
    WEBHOOK_ID_PATTERN,
    WEBHOOK_METHODS,
    webhook_event_type,
)

_WEBHOOK_ID = re.compile(WEBHOOK_ID_PATTERN)
Method = Literal["GET", "HEAD", "POST", "PUT"]
"""The methods Home Assistant lets a webhook trigger allow."""


def _webhook_id(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a webhook id (text); got {value!r}"[:200])  # noqa: TRY004 - pydantic reports only ValueError
    if _WEBHOOK_ID.fullmatch(value) is None:
        shown = repr(value) if len(value) <= 60 else f"{value[:57]!r}... ({len(value)} characters)"
        raise ValueError(f"invalid webhook id {shown}: {WEBHOOK_ID_HINT}")
    return value


def _methods(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def _with_post(methods: tuple[Method, ...]) -> tuple[Method, ...]:
    if not methods:
        raise ValueError("expected at least one method")
    if len(set(methods)) != len(methods):
        raise ValueError("a method is listed twice")
    if "POST" not in methods:
        raise ValueError(
            "the API calls webhooks with POST only (POST /api/v1/webhooks/<id>): "
            "allowed_methods must include POST, or this trigger never fires"
        )
    return methods


class WebhookTriggerConfig(TriggerConfig):
    """Fires on each call of webhook ``webhook_id`` made with one of ``allowed_methods``."""

    kind: Literal["webhook"]
    webhook_id: Annotated[str, BeforeValidator(_webhook_id)]
    """Which webhook: the last segment of ``/api/v1/webhooks/<webhook_id>``; 1 to 64 letters,
    digits, ``_`` or ``-``. Several rules may listen to one webhook."""
    allowed_methods: Annotated[
        tuple[Method, ...], BeforeValidator(_methods), AfterValidator(_with_post)
    ] = WEBHOOK_METHODS
    """The methods a call may use (Home Assistant's default: POST and PUT). The API takes
    webhooks by POST, so the list must include it."""


@REGISTRY.register
class WebhookTrigger(Trigger[WebhookTriggerConfig]):
    """Indexed by its webhook's event type."""

    CONFIG = WebhookTriggerConfig

    @property
    def event_type(self) -> str:
        """The event type the engine offers this webhook's calls under."""
        return webhook_event_type(self.config.webhook_id)

    def watch(self) -> Watch:
        """Indexed by its webhook's event type."""
        return Watch(event_types=(self.event_type,))

    def matches_event(self, event_type: str, data: Mapping[str, JsonValue]) -> bool:
        """Whether a call of this webhook, made with an allowed method, fires it."""
        return event_type == self.event_type and data.get("method") in self.config.allowed_methods
