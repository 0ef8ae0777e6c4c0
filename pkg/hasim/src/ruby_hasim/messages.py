"""The messages the simulator sends, built as Home Assistant's `websocket_api.messages` does."""

from __future__ import annotations

from ruby_hasim import const
from ruby_hasim.errors import CommandError
from ruby_hasim.model import Event, JsonObject, JsonValue


def auth_required() -> JsonObject:
    """Sent first on every connection."""
    return {"type": const.TYPE_AUTH_REQUIRED, "ha_version": const.HA_VERSION}


def auth_ok() -> JsonObject:
    """The token was accepted."""
    return {"type": const.TYPE_AUTH_OK, "ha_version": const.HA_VERSION}


def auth_invalid(message: str = const.MSG_INVALID_AUTH) -> JsonObject:
    """The token was refused; the connection closes next."""
    return {"type": const.TYPE_AUTH_INVALID, "message": message}


def result(iden: int, value: JsonValue = None) -> JsonObject:
    """A command succeeded."""
    return {"id": iden, "type": const.TYPE_RESULT, "success": True, "result": value}


def error(iden: JsonValue, code: str, message: str, **extra: JsonValue) -> JsonObject:
    """A command failed with `code` (`extra`: the translation fields, when there are some)."""
    payload: JsonObject = {"code": code, "message": message, **extra}
    return {"id": iden, "type": const.TYPE_RESULT, "success": False, "error": payload}


def error_from(iden: JsonValue, exc: BaseException) -> JsonObject:
    """The one place an exception becomes an error code (as `async_handle_exception`)."""
    if not isinstance(exc, CommandError):
        return error(iden, const.ERR_UNKNOWN_ERROR, "Unknown error")
    if exc.translation_key is None:
        return error(iden, exc.code, exc.message)
    placeholders: JsonObject = dict(exc.translation_placeholders)
    return error(
        iden,
        exc.code,
        exc.message,
        translation_key=exc.translation_key,
        translation_placeholders=placeholders,
        translation_domain=exc.translation_domain,
    )


def pong(iden: int) -> JsonObject:
    """The answer to `ping`."""
    return {"id": iden, "type": const.TYPE_PONG}


def event_message(subscription: int, event: Event) -> str:
    """An event for one subscription, reusing the event's JSON serialised once."""
    return f'{{"id":{subscription},"type":"event","event":{event.encoded}}}'
