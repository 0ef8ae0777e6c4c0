"""Constants of Home Assistant's WebSocket API, as the simulator speaks it."""

from __future__ import annotations

from typing import Final

HA_VERSION: Final = "2025.4.4"
"""The Home Assistant release the simulator claims to be."""

URL_PATH: Final = "/api/websocket"
"""Where the WebSocket API is served."""

# Message types.
TYPE_AUTH: Final = "auth"
TYPE_AUTH_OK: Final = "auth_ok"
TYPE_AUTH_REQUIRED: Final = "auth_required"
TYPE_AUTH_INVALID: Final = "auth_invalid"
TYPE_RESULT: Final = "result"
TYPE_EVENT: Final = "event"
TYPE_PONG: Final = "pong"

# Error codes (homeassistant.components.websocket_api.const).
ERR_ID_REUSE: Final = "id_reuse"
ERR_INVALID_FORMAT: Final = "invalid_format"
ERR_NOT_FOUND: Final = "not_found"
ERR_UNKNOWN_COMMAND: Final = "unknown_command"
ERR_HOME_ASSISTANT_ERROR: Final = "home_assistant_error"
ERR_SERVICE_VALIDATION_ERROR: Final = "service_validation_error"
ERR_UNAUTHORIZED: Final = "unauthorized"
ERR_UNKNOWN_ERROR: Final = "unknown_error"
ERR_TIMEOUT: Final = "timeout"

ERROR_CODES: Final = frozenset(
    {
        ERR_ID_REUSE,
        ERR_INVALID_FORMAT,
        ERR_NOT_FOUND,
        ERR_UNKNOWN_COMMAND,
        ERR_HOME_ASSISTANT_ERROR,
        ERR_SERVICE_VALIDATION_ERROR,
        ERR_UNAUTHORIZED,
        ERR_UNKNOWN_ERROR,
        ERR_TIMEOUT,
    }
)
"""Every error code Home Assistant's WebSocket API sends."""

MSG_INVALID_AUTH: Final = "Invalid access token or password"
MSG_ID_REUSE: Final = "Identifier values have to increase."
MSG_BAD_FORMAT: Final = "Message incorrectly formatted."
MSG_UNKNOWN_COMMAND: Final = "Unknown command."
MSG_SUBSCRIPTION_NOT_FOUND: Final = "Subscription not found."

# Events.
EVENT_STATE_CHANGED: Final = "state_changed"
EVENT_CALL_SERVICE: Final = "call_service"
MATCH_ALL: Final = "*"
MAX_LENGTH_EVENT_TYPE: Final = 64
"""The longest event type Home Assistant's bus fires (`homeassistant.const`)."""

AUTH_TIMEOUT: Final = 10.0
"""Seconds a client has to send its `auth` message (as in Home Assistant)."""

FEATURE_COALESCE_MESSAGES: Final = "coalesce_messages"
"""With this feature on, messages queued together are sent as one JSON array."""
