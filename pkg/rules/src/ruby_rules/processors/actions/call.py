"""``call``: call a Home Assistant service on a target, with data."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import EntityIds, ServiceName, Token, one_or_many
from ruby_schemas.primitives import JsonObject

Tokens = Annotated[tuple[Token, ...], BeforeValidator(one_or_many), Field(min_length=1)]


class Target(BaseModel):
    """What a service acts on: entities, areas and/or devices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity_id: EntityIds | None = None
    """One entity id or a list."""
    area_id: Tokens | None = None
    """One area id or a list."""
    device_id: Tokens | None = None
    """One device id or a list."""


class CallActionConfig(ActionConfig):
    """Publishes a command that makes the gateway call ``service`` once."""

    kind: Literal["call"]
    service: ServiceName
    """``domain.service``, such as ``light.turn_on``."""
    target: Target = Target()
    """What the service acts on."""
    data: JsonObject = Field(default_factory=dict)
    """The service data, such as ``{brightness_pct: 60}``."""


@REGISTRY.register
class CallAction(Action[CallActionConfig]):
    """Command building and publishing arrive with the engine's runner."""

    CONFIG = CallActionConfig

    @property
    def domain_service(self) -> tuple[str, str]:
        """The service's domain and name, the two tokens of its command subject."""
        domain, _, service = self.config.service.partition(".")
        return domain, service
