"""The WebSocket commands, dispatched as Home Assistant's `ActiveConnection.async_handle` does.

Order of checks: message format (`invalid_format`), id increase (`id_reuse`), known command
(`unknown_command`), the command's schema (`invalid_format`), then the handler. Every failure is
a `CommandError` (or another exception) turned into a result by `messages.error_from`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ruby_hasim import const, messages
from ruby_hasim.errors import HomeAssistantError, InvalidFormatError, NotFoundError
from ruby_hasim.model import Context, Event, JsonObject, JsonValue

if TYPE_CHECKING:
    from ruby_hasim.connection import Connection

Handler = Callable[["Connection", JsonObject], None]
"""Handle one validated command; send its result (or raise a `CommandError`)."""

Check = Callable[[JsonValue], bool]


def _is_str(value: JsonValue) -> bool:
    return isinstance(value, str)


def _is_dict(value: JsonValue) -> bool:
    return isinstance(value, dict)


def _is_bool(value: JsonValue) -> bool:
    return isinstance(value, bool)


def _is_positive_int(value: JsonValue) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check(msg: JsonObject, required: Mapping[str, Check], optional: Mapping[str, Check]) -> None:
    for key, check in required.items():
        if key not in msg:
            raise InvalidFormatError(f"required key not provided @ data['{key}']")
        if not check(msg[key]):
            raise InvalidFormatError(f"invalid value for dictionary value @ data['{key}']")
    for key, value in msg.items():
        if key in ("id", "type") or key in required:
            continue
        valid = optional.get(key)
        if valid is None:
            raise InvalidFormatError(f"extra keys not allowed @ data['{key}']")
        if not valid(value):
            raise InvalidFormatError(f"invalid value for dictionary value @ data['{key}']")


def handle(conn: Connection, msg: Any) -> None:
    """Handle one decoded message from an authenticated client."""
    cur_id = msg.get("id") if isinstance(msg, dict) else None
    type_ = msg.get("type") if isinstance(msg, dict) else None
    if (
        not isinstance(msg, dict)
        or type(cur_id) is not int
        or cur_id <= 0
        or not isinstance(type_, str)
        or not type_
    ):
        iden = msg.get("id") if isinstance(msg, dict) else 0
        conn.send(messages.error(iden, const.ERR_INVALID_FORMAT, const.MSG_BAD_FORMAT))
        return
    if cur_id <= conn.last_id:
        conn.send(messages.error(cur_id, const.ERR_ID_REUSE, const.MSG_ID_REUSE))
        return
    handler = COMMANDS.get(type_)
    if handler is None:
        conn.send(messages.error(cur_id, const.ERR_UNKNOWN_COMMAND, const.MSG_UNKNOWN_COMMAND))
        return
    try:
        handler(conn, msg)
    except Exception as exc:  # every failure becomes a result error, as in HA
        conn.send(messages.error_from(cur_id, exc))
    conn.last_id = cur_id


def ping(conn: Connection, msg: JsonObject) -> None:
    """`ping` → `pong`, unless pings are muted."""
    _check(msg, {}, {})
    if not conn.faults.pings_muted:
        conn.send(messages.pong(_id(msg)))


def get_states(conn: Connection, msg: JsonObject) -> None:
    """Every state object."""
    _check(msg, {}, {})
    states: list[JsonValue] = [state.as_dict() for state in conn.home.states.values()]
    conn.send(messages.result(_id(msg), states))


def get_config(conn: Connection, msg: JsonObject) -> None:
    """A minimal core configuration, in the home's core state (``RUNNING`` but around a
    simulated restart)."""
    _check(msg, {}, {})
    domains = sorted({state.domain for state in conn.home.states.values()})
    config: JsonObject = {
        "location_name": "Ruby Home (simulated)",
        "latitude": 52.37,
        "longitude": 4.89,
        "elevation": 0,
        "unit_system": {"length": "km", "mass": "g", "temperature": "°C", "volume": "L"},
        "time_zone": "UTC",
        "components": ["websocket_api", *domains],
        "version": const.HA_VERSION,
        "state": conn.home.core_state,
        "safe_mode": False,
        "recovery_mode": False,
    }
    conn.send(messages.result(_id(msg), config))


def get_services(conn: Connection, msg: JsonObject) -> None:
    """Every service of the simulated home, per domain (AppDaemon asks at its start)."""
    _check(msg, {}, {})
    conn.send(messages.result(_id(msg), conn.services.describe()))


def current_user(conn: Connection, msg: JsonObject) -> None:
    """`auth/current_user`: the user the token belongs to (the `user_id` of its contexts)."""
    _check(msg, {}, {})
    user: JsonObject = {
        "id": conn.user_id,
        "name": "gateway",
        "is_owner": False,
        "is_admin": True,
        "credentials": [],
        "mfa_modules": [],
    }
    conn.send(messages.result(_id(msg), user))


def supported_features(conn: Connection, msg: JsonObject) -> None:
    """Turn on features; `coalesce_messages` makes queued messages go out as JSON arrays."""
    _check(msg, {"features": _is_dict}, {})
    features = msg["features"]
    conn.coalesce = isinstance(features, dict) and bool(
        features.get(const.FEATURE_COALESCE_MESSAGES)
    )
    conn.send(messages.result(_id(msg)))


def subscribe_events(conn: Connection, msg: JsonObject) -> None:
    """Forward bus events (of `event_type`, or all) to this connection under the command id."""
    _check(msg, {}, {"event_type": _is_str})
    event_type = msg.get("event_type", const.MATCH_ALL)
    iden = _id(msg)

    def forward(event: Event) -> None:
        if event_type in (const.MATCH_ALL, event.event_type):
            conn.send(messages.event_message(iden, event))

    conn.subscriptions[iden] = conn.home.listen(forward)
    conn.subscription_types[iden] = str(event_type)
    conn.send(messages.result(iden))
    conn.on_change()


def unsubscribe_events(conn: Connection, msg: JsonObject) -> None:
    """Stop a subscription; `not_found` when it does not exist."""
    _check(msg, {"subscription": _is_positive_int}, {})
    unsubscribe = conn.subscriptions.pop(_id(msg, "subscription"), None)
    if unsubscribe is None:
        raise NotFoundError(const.MSG_SUBSCRIPTION_NOT_FOUND)
    conn.subscription_types.pop(_id(msg, "subscription"), None)
    unsubscribe()
    conn.send(messages.result(_id(msg)))
    conn.on_change()


def fire_event(conn: Connection, msg: JsonObject) -> None:
    """Fire `event_type` with `event_data` on the bus in a new context of the connection's user;
    subscribers get the event before the caller gets the result, which carries the context."""
    _check(msg, {"event_type": _is_str}, {"event_data": _is_dict})
    event_type, data = str(msg["event_type"]), msg.get("event_data", {})
    assert isinstance(data, dict)  # noqa: S101  # checked by _check
    if len(event_type) > const.MAX_LENGTH_EVENT_TYPE:
        limit = str(const.MAX_LENGTH_EVENT_TYPE)
        raise HomeAssistantError(
            f"Value {event_type} for property event_type has a maximum length of {limit} "
            "characters.",
            translation_domain="homeassistant",
            translation_key="max_length_exceeded",
            translation_placeholders={
                "value": event_type,
                "property_name": "event_type",
                "max_length": limit,
            },
        )
    context = Context(user_id=conn.user_id)
    conn.home.fire(event_type, dict(data), context)
    conn.send(messages.result(_id(msg), {"context": context.as_dict()}))


def call_service(conn: Connection, msg: JsonObject) -> None:
    """Run a service to completion, then answer with the call's context."""
    _check(
        msg,
        {"domain": _is_str, "service": _is_str},
        {"service_data": _is_dict, "target": _is_dict, "return_response": _is_bool},
    )
    service_data, target = msg.get("service_data", {}), msg.get("target", {})
    assert isinstance(service_data, dict)  # noqa: S101  # checked by _check
    assert isinstance(target, dict)  # noqa: S101  # checked by _check
    for key in target:
        if key not in ("entity_id", "device_id", "area_id", "floor_id", "label_id"):
            raise InvalidFormatError(f"extra keys not allowed @ data['target']['{key}']")
    context = Context(user_id=conn.user_id)
    conn.services.call(
        str(msg["domain"]),
        str(msg["service"]),
        service_data,
        target,
        context,
        return_response=bool(msg.get("return_response", False)),
    )
    conn.send(messages.result(_id(msg), {"context": context.as_dict()}))


def _id(msg: JsonObject, key: str = "id") -> int:
    value = msg[key]
    if not isinstance(value, int):
        raise InvalidFormatError(f"expected int for dictionary value @ data['{key}']")
    return value


COMMANDS: dict[str, Handler] = {
    "ping": ping,
    "get_states": get_states,
    "get_config": get_config,
    "get_services": get_services,
    "auth/current_user": current_user,
    "supported_features": supported_features,
    "subscribe_events": subscribe_events,
    "unsubscribe_events": unsubscribe_events,
    "fire_event": fire_event,
    "call_service": call_service,
}
"""The commands the simulator knows; any other type gets `unknown_command`."""
