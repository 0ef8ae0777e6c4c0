"""Redaction: by key (at any depth) and by secret-looking text, in every rendered event.

The fake secrets are assembled at run time so that the repository's secret scanner has nothing
to find in this file.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import string
from collections.abc import Callable
from typing import Any, NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruby_runtime.correlation import bind_message_context
from ruby_runtime.logging import configure_logging, get_logger
from ruby_runtime.redaction import REDACTED, is_secret_key, redact, scrub

Records = Callable[[], list[dict[str, Any]]]

BASE32 = string.ascii_uppercase + "234567"
FAKE_SEED = "S" + "U" + "A" * 55
FAKE_ACCOUNT_SEED = "S" + "A" + "B2" * 27 + "C"
FAKE_VAULT_TOKEN = "hv" + "s." + "CAESI" * 6
FAKE_LEGACY_TOKEN = "s" + "." + "aB3dE5" * 4
FAKE_PEM = (
    "-----BEGIN " + "RSA PRIVATE" + " KEY-----\n"
    + "MIIEow" * 10 + "\n"
    + "-----END " + "RSA PRIVATE" + " KEY-----"
)  # fmt: skip


def _raise(exc: BaseException) -> NoReturn:
    raise exc


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


FAKE_JWT = ".".join(
    [_b64('{"alg":"HS256","typ":"JWT"}'), _b64('{"iss":"fake-issuer-id"}'), "c2lnbmF0dXJl"]
)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "secret_id",
        "token",
        "ha_token",
        "accessToken",
        "X-Auth-Token",
        "seed",
        "nkey_seed",
        "NKEY",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "apikey",
        "Authorization",
        "auth",
        "basic_auth",
        "credential",
        "credentials",
        "private_key",
        "privateKey",
        "role_id",
        "cookie",
    ],
)
def test_secret_looking_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "event",
        "level",
        "ts",
        "service",
        "logger",
        "correlation_id",
        "causation_id",
        "author",
        "authenticated",
        "entity_id",
        "subject",
        "public_key",
        "delivery",
        "exc_value",
    ],
)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    "secret",
    [FAKE_SEED, FAKE_ACCOUNT_SEED, FAKE_VAULT_TOKEN, FAKE_LEGACY_TOKEN, FAKE_PEM, FAKE_JWT],
    ids=["user-seed", "account-seed", "vault", "vault-legacy", "pem", "jwt"],
)
def test_secret_looking_text_is_replaced_and_its_surroundings_kept(secret: str) -> None:
    assert scrub(f"before {secret} after") == f"before {REDACTED} after"


def test_bearer_credentials_are_replaced() -> None:
    assert scrub("Authorization: Bearer abc.def-123") == f"Authorization: {REDACTED}"


def test_an_unterminated_private_key_is_redacted_to_the_end() -> None:
    truncated = FAKE_PEM[: FAKE_PEM.index("-----END")]

    assert scrub("key: " + truncated) == "key: " + REDACTED


@pytest.mark.parametrize(
    "text",
    [
        "ruby.evt.ha.state.s.kitchen_ceiling_light_main",  # a subject segment "s"
        "items.abcdefghijklmnopqrstuvwxyz",
        "S" + "U" + "A" * 54,  # one character short of a seed
        "hvs.short",
        "-----BEGIN " + "PUBLIC KEY-----",
    ],
)
def test_text_that_only_resembles_a_secret_is_kept(text: str) -> None:
    assert scrub(text) == text


def test_redact_walks_nested_structures_without_modifying_them() -> None:
    value = {
        "entity": "light.porch",
        "auth": {"user": "ruby", "password": "x"},
        "items": [{"api_key": "y", "n": 1}, ("ok", "seed is " + FAKE_SEED)],
        "flags": {True},
        "nothing": None,
    }
    original = json.dumps(value, default=list, sort_keys=True)

    assert redact(value) == {
        "entity": "light.porch",
        "auth": REDACTED,
        "items": [{"api_key": REDACTED, "n": 1}, ["ok", "seed is " + REDACTED]],
        "flags": [True],
        "nothing": None,
    }
    assert json.dumps(value, default=list, sort_keys=True) == original


def test_an_object_is_kept_unless_its_repr_holds_a_secret() -> None:
    class Opaque:
        def __init__(self, inner: str) -> None:
            self.inner = inner

        def __repr__(self) -> str:
            return f"Opaque({self.inner})"

    harmless = Opaque("fine")
    assert redact(harmless) is harmless
    assert redact(Opaque(FAKE_VAULT_TOKEN)) == f"Opaque({REDACTED})"
    assert redact(FAKE_SEED.encode()) == f"b'{REDACTED}'"


seeds = st.builds(
    lambda kind, body: "S" + kind + body,
    st.sampled_from("UAONCX"),
    st.text(alphabet=BASE32, min_size=55, max_size=55),
)


@given(prefix=st.text(max_size=30), seed=seeds, suffix=st.text(max_size=30))
def test_a_seed_never_survives_whatever_surrounds_it(prefix: str, seed: str, suffix: str) -> None:
    assert seed not in scrub(prefix + seed + suffix)


json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "room", "n"]), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(tree=json_values, depth=st.integers(min_value=0, max_value=5))
def test_a_secret_key_is_redacted_at_any_depth(tree: object, depth: int) -> None:
    marker = "marker-value-that-must-not-appear"
    value: object = {"payload": tree, "token": marker}
    for _ in range(depth):
        value = [{"wrapped": value}]

    rendered = json.dumps(redact(value))
    assert marker not in rendered
    assert redact(redact(value)) == redact(value)


# End to end, through the configured pipeline.


def test_structlog_event_is_redacted_by_key_and_by_value(
    logs: Records, stream: io.StringIO
) -> None:
    hunter = "hunter2"
    get_logger().info(
        "loaded creds " + FAKE_SEED,
        password=hunter,
        vault={"role_id": "r-1", "nested": [{"secret_id": "s-1"}]},
        note="token was " + FAKE_VAULT_TOKEN,
    )

    [record] = logs()
    assert record["event"] == "loaded creds " + REDACTED
    assert record["password"] == REDACTED
    assert record["vault"] == {"role_id": REDACTED, "nested": [{"secret_id": REDACTED}]}
    assert record["note"] == "token was " + REDACTED
    for secret in (FAKE_SEED, hunter, "r-1", "s-1", FAKE_VAULT_TOKEN):
        assert secret not in stream.getvalue()


def test_stdlib_event_is_redacted_by_key_and_by_value(logs: Records, stream: io.StringIO) -> None:
    logging.getLogger("nats.aio.client").error(
        "connect with %s failed", FAKE_SEED, extra={"auth": {"user": "u"}, "jwt_hint": FAKE_JWT}
    )

    [record] = logs()
    assert record["event"] == f"connect with {REDACTED} failed"
    assert record["auth"] == REDACTED
    assert record["jwt_hint"] == REDACTED
    assert FAKE_SEED not in stream.getvalue()
    assert FAKE_JWT not in stream.getvalue()


@pytest.mark.parametrize("source", ["structlog", "stdlib"])
def test_a_token_in_an_exception_message_is_redacted(
    logs: Records, stream: io.StringIO, source: str
) -> None:
    try:
        _raise(PermissionError("vault refused " + FAKE_VAULT_TOKEN))
    except PermissionError:
        if source == "structlog":
            get_logger().exception("secret read failed")
        else:
            logging.getLogger("hvac").exception("secret read failed")

    [record] = logs()
    assert record["exception"][0]["exc_value"] == "vault refused " + REDACTED
    assert FAKE_VAULT_TOKEN not in stream.getvalue()


def test_bound_message_context_is_redacted(logs: Records, stream: io.StringIO) -> None:
    with bind_message_context("corr-1", subject="leak " + FAKE_SEED):
        get_logger().info("handled")

    assert logs()[0]["subject"] == "leak " + REDACTED
    assert FAKE_SEED not in stream.getvalue()


def test_console_output_is_redacted_too() -> None:
    out = io.StringIO()
    key_value = "k-1"
    configure_logging("svc", stream=out, renderer="console")
    try:
        _raise(RuntimeError("with " + FAKE_VAULT_TOKEN))
    except RuntimeError:
        get_logger().exception("failed " + FAKE_SEED, api_key=key_value)

    text = out.getvalue()
    assert "RuntimeError: with " + REDACTED in text
    assert "api_key=" + REDACTED in text
    for secret in (FAKE_VAULT_TOKEN, FAKE_SEED, key_value):
        assert secret not in text
