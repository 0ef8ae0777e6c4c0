"""How `rubyctl audit why` prints the chain of causes (`ruby_auditstore.why` finds it)."""

from __future__ import annotations

from ruby_ctl.audit_read import when
from ruby_schemas.audit_api import AuditChainV1, CommandLink, Link, RuleLink, StateLink


def lines(chain: AuditChainV1) -> list[str]:
    """One line per link, newest first, then how the search ended."""
    out = [_line(link, i == 0) for i, link in enumerate(chain.chain)]
    if chain.end is not None:
        out.append(f"  <- {chain.end}")
    return out


def _line(link: Link, first: bool) -> str:
    match link:
        case StateLink():
            return _state(link, first)
        case CommandLink():
            return (
                f"  <- command {link.command_id} {link.service} executed at "
                f"{when(link.executed_at)} by {link.actor}"
            )
        case RuleLink():
            version = f" (version {link.rule_version})" if link.rule_version else ""
            return f"  <- rule {link.rule_id}{version} fired at {when(link.fired_at)}"
    if link.kind == "time":
        return f"  <- time trigger {link.event_id}"
    return f"  <- event {link.event_id} (not a state change; not followed further)"


def _state(link: StateLink, first: bool) -> str:
    at = "" if link.changed_at is None else f" at {when(link.changed_at)}"
    if first:
        if link.state is None:
            return f"{link.entity_id} (context {link.context_id})"
        since = "" if link.changed_at is None else f" since {when(link.changed_at)}"
        return f"{link.entity_id} is {link.state}{since} (context {link.context_id})"
    if link.note is not None:
        return f"  <- {link.entity_id} changed{at} (event {link.event_id}; {link.note})"
    old = link.old_state if link.old_state is not None else "none"
    new = link.state if link.state is not None else "removed"
    how = ", reconciled after a gateway reconnect" if link.reconciled else ""
    return f"  <- {link.entity_id} changed {old} -> {new}{at} (event {link.event_id}{how})"
