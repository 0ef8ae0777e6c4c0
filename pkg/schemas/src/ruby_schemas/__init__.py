"""Ruby Core's data contracts: versioned envelopes and payloads, decoded once at the edge.

`make_envelope` builds a message, `encode` turns it into bytes, `decode` turns bytes back into a
typed envelope or raises `ContractError`. `REGISTRY` maps every `type` to its payload class.
"""

from ruby_schemas.audit import AuditOutcome, AuditRecordV1
from ruby_schemas.base import Contract, Payload
from ruby_schemas.commands import (
    CallServiceV1,
    CommandOutcomeV1,
    FireEventV1,
    Outcome,
    ServiceTarget,
)
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, make_envelope, new_id
from ruby_schemas.errors import ContractError, FieldError
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha_events import EntityState, EventFiredV1, HaLifecycleV1, StateChangedV1
from ruby_schemas.registry import REGISTRY, Registry, decode, encode
from ruby_schemas.rules import (
    RuleError,
    RuleFailedV1,
    RuleFiredV1,
    RuleLoadedV1,
    RuleRejectedV1,
    RuleUnloadedV1,
)
from ruby_schemas.webhooks import WebhookCalledV1

__all__ = [
    "REGISTRY",
    "AuditOutcome",
    "AuditRecordV1",
    "CallServiceV1",
    "CommandOutcomeV1",
    "Contract",
    "ContractError",
    "DeadLetterV1",
    "EntityState",
    "Envelope",
    "EventFiredV1",
    "FieldError",
    "FireEventV1",
    "HaEventTypesV1",
    "HaLifecycleV1",
    "Outcome",
    "Payload",
    "Registry",
    "RuleError",
    "RuleFailedV1",
    "RuleFiredV1",
    "RuleLoadedV1",
    "RuleRejectedV1",
    "RuleUnloadedV1",
    "ServiceTarget",
    "StateChangedV1",
    "WebhookCalledV1",
    "decode",
    "encode",
    "make_envelope",
    "new_id",
]
