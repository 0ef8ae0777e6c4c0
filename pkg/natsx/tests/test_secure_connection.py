"""nats-server accepts only TLS connections that prove an NKEY it knows (ADR-0005).

Plaintext, an unknown NKEY, a known public key with a signature from the wrong seed, and a
client that does not trust the server's certificate are each refused. The raw-protocol checks
speak NATS over a socket, so nothing in a client library can hide what the server answers;
the control case (the right seed, same code) shows that the same bytes otherwise succeed.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from pathlib import Path

import nkeys
import pytest

from ruby_ctl.testing import Installation
from ruby_natsx.connection import NatsRefusedError, NatsSettings, connect, tls_context
from ruby_natsx.credentials import new_user_seed, user_public_key
from ruby_natsx.topology import GATEWAY


def _port(installation: Installation) -> int:
    return int(installation.nats_url.rsplit(":", 1)[1])


def _line(stream: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = stream.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _handshake(
    port: int, *, tls: ssl.SSLContext | None, public: str | None = None, seed: str | None = None
) -> str:
    """Connect at the protocol level, send CONNECT and PING; return the server's answer."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn: socket.socket = raw
    try:
        info = json.loads(_line(raw).removeprefix("INFO "))
        if tls is not None:
            conn = tls.wrap_socket(raw, server_hostname="127.0.0.1")
        fields: dict[str, object] = {"verbose": False, "pedantic": False, "protocol": 1}
        if public is not None and seed is not None:
            signer = nkeys.from_seed(bytearray(seed.encode()))
            signature = signer.sign(info["nonce"].encode())
            sig = base64.urlsafe_b64encode(signature).decode().rstrip("=")
            fields |= {"nkey": public, "sig": sig}
        conn.sendall(b"CONNECT " + json.dumps(fields).encode() + b"\r\nPING\r\n")
        answer = _line(conn)
        while answer.startswith("INFO"):
            answer = _line(conn)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"(connection closed: {type(exc).__name__})"
    else:
        return answer or "(connection closed)"
    finally:
        conn.close()


def test_the_right_seed_over_tls_gets_a_pong(installation: Installation) -> None:
    seed = installation.seed(GATEWAY).reveal()
    tls = tls_context(installation.state.pki.ca_cert)
    answer = _handshake(_port(installation), tls=tls, public=user_public_key(seed), seed=seed)
    assert answer == "PONG"


def test_plaintext_is_refused(installation: Installation) -> None:
    seed = installation.seed(GATEWAY).reveal()
    answer = _handshake(_port(installation), tls=None, public=user_public_key(seed), seed=seed)
    assert answer.startswith("(connection closed")  # no PONG, no session: the server hangs up
    with socket.create_connection(("127.0.0.1", _port(installation)), timeout=5) as raw:
        info = json.loads(_line(raw).removeprefix("INFO "))
    assert info["tls_required"] is True
    assert "nonce" in info


def test_a_known_public_key_signed_with_the_wrong_seed_is_refused(
    installation: Installation,
) -> None:
    claimed = user_public_key(installation.seed(GATEWAY).reveal())
    tls = tls_context(installation.state.pki.ca_cert)
    answer = _handshake(_port(installation), tls=tls, public=claimed, seed=new_user_seed())
    assert answer == "-ERR 'Authorization Violation'"


def test_no_credentials_are_refused(installation: Installation) -> None:
    tls = tls_context(installation.state.pki.ca_cert)
    assert _handshake(_port(installation), tls=tls) == "-ERR 'Authorization Violation'"


async def test_an_unknown_nkey_is_refused_with_a_clear_error(installation: Installation) -> None:
    settings = NatsSettings(
        url=installation.nats_url,
        name="stranger",
        ca_file=installation.state.pki.ca_cert,
        nkey_seed=new_user_seed(),
        identity=GATEWAY,
    )
    with pytest.raises(NatsRefusedError, match="authorization violation"):
        await connect(settings)


async def test_a_server_the_client_does_not_trust_is_refused(
    installation: Installation, tmp_path: Path
) -> None:
    from ruby_ctl.pki import PkiPaths, new_ca

    other = PkiPaths(tmp_path)
    new_ca(other, "someone else")
    settings = NatsSettings(
        url=installation.nats_url,
        name="gateway",
        ca_file=other.ca_cert,
        nkey_seed=installation.seed(GATEWAY).reveal(),
        identity=GATEWAY,
    )
    with pytest.raises(NatsRefusedError, match="certificate is not trusted"):
        await connect(settings)


async def test_a_nats_url_is_upgraded_to_tls_never_downgraded(installation: Installation) -> None:
    url = installation.nats_url.replace("tls://", "nats://")
    nc = await connect(
        NatsSettings(
            url=url,
            name="gateway",
            ca_file=installation.state.pki.ca_cert,
            nkey_seed=installation.seed(GATEWAY).reveal(),
            identity=GATEWAY,
        )
    )
    try:
        assert nc.connected_url is not None
        assert nc.connected_url.scheme == "tls"
    finally:
        await nc.close()
