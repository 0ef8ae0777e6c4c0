"""A webhook called through the API: what the gateway publishes for ``POST /webhooks/{id}``
and the engine offers to `webhook` triggers (ADR-0037)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal, TypeAlias

from pydantic import Field, JsonValue

from ruby_schemas.base import Payload
from ruby_schemas.primitives import FiniteJson, NonEmptyStr, UtcDatetime

WEBHOOK_ID_MAX_LENGTH: Final = 64
"""Characters in a webhook id, as in every other id a rule names."""
WEBHOOK_ID_PATTERN: Final = f"^[A-Za-z0-9_-]{{1,{WEBHOOK_ID_MAX_LENGTH}}}$"
"""A webhook id: 1 to 64 letters, digits, ``_`` or ``-``. It is a path segment of the API's
URL and a subject token (``<p>.evt.api.webhook.<id>``): nothing in it needs escaping."""
WEBHOOK_ID_HINT: Final = (
    f"a webhook id is 1 to {WEBHOOK_ID_MAX_LENGTH} letters, digits, '_' or '-' "
    "(it is a URL path segment and a subject token)"
)

WebhookId: TypeAlias = Annotated[str, Field(pattern=WEBHOOK_ID_PATTERN)]
"""A webhook id (`WEBHOOK_ID_PATTERN`)."""
WebhookMethod: TypeAlias = Literal["POST", "PUT"]
"""The methods a webhook may be called with (Home Assistant's defaults; its GET and HEAD carry
no body, and the API does not serve them)."""
WEBHOOK_METHODS: Final[tuple[WebhookMethod, ...]] = ("POST", "PUT")

WEBHOOK_EVENT_PREFIX: Final = "webhook."
"""The engine offers a call of webhook ``x`` to its triggers as an event of type
``webhook.x``: a dot keeps it apart from every bus event type a rule can name (those are
subject tokens), as ``homeassistant.start`` is."""


def webhook_event_type(webhook_id: str) -> str:
    """The event type the engine offers calls of ``webhook_id`` under."""
    return f"{WEBHOOK_EVENT_PREFIX}{webhook_id}"


class WebhookCalledV1(Payload):
    """Someone with a ``control`` token called ``POST /api/v1/webhooks/<webhook_id>``.

    Its message id is derived from the token's name, the webhook id and the request's
    ``Idempotency-Key`` when there is one, so a retried call is one event.
    """

    TYPE: ClassVar[str] = "api.webhook.v1"

    webhook_id: WebhookId
    """Which webhook: the path's last segment."""
    method: WebhookMethod
    """The HTTP method it was called with."""
    body: FiniteJson = None
    """The request's body, parsed as JSON (any JSON value); ``null`` when it was empty."""
    query: dict[str, str] = Field(default_factory=dict)
    """The URL's query parameters; of a name given twice, the first value (as Home Assistant's
    ``trigger.query.<name>`` reads it)."""
    received: UtcDatetime
    """When the gateway received the call."""
    caller: NonEmptyStr
    """The name of the token that called it (never the token)."""

    @property
    def event_type(self) -> str:
        """The event type the engine offers it to triggers under (`webhook_event_type`)."""
        return webhook_event_type(self.webhook_id)

    def trigger_data(self) -> dict[str, JsonValue]:
        """What a `webhook` trigger matches on and a run reads as ``trigger.*``."""
        return {
            "webhook_id": self.webhook_id,
            "method": self.method,
            "json": self.body,
            "query": dict(self.query),
            "caller": self.caller,
        }
