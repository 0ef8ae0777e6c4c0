"""The failures a command can end in, each carrying the error code Home Assistant sends."""

from __future__ import annotations

from collections.abc import Mapping

from ruby_hasim import const


class CommandError(Exception):
    """A command failed; the client receives `code` and `message` in a result error."""

    code: str = const.ERR_HOME_ASSISTANT_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        translation_domain: str | None = None,
        translation_key: str | None = None,
        translation_placeholders: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.translation_domain = translation_domain
        self.translation_key = translation_key
        self.translation_placeholders = dict(translation_placeholders or {})


class InvalidFormatError(CommandError):
    """The message or the service data does not match the schema (`invalid_format`)."""

    code = const.ERR_INVALID_FORMAT


class NotFoundError(CommandError):
    """A service or subscription does not exist (`not_found`)."""

    code = const.ERR_NOT_FOUND


class ServiceValidationError(CommandError):
    """The service refused the data it was given (`service_validation_error`)."""

    code = const.ERR_SERVICE_VALIDATION_ERROR


class HomeAssistantError(CommandError):
    """The service failed (`home_assistant_error`)."""

    code = const.ERR_HOME_ASSISTANT_ERROR


class UnauthorizedError(CommandError):
    """The user may not do this (`unauthorized`)."""

    code = const.ERR_UNAUTHORIZED
