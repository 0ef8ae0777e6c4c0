"""The installation's local CA and nats-server's certificate (``cryptography``), idempotently.

The CA signs one server certificate for ``127.0.0.1`` and ``localhost``. Its certificate is
``ca.pem`` (what every client trusts); its private key is handed to the caller to keep in
Vault and is never written to disk. The server's key is written 0600 because nats-server reads
it from a file. ``ensure_server_cert`` re-issues the server certificate only when it is
missing, does not match its key, was not issued by the CA, lacks a name, or expires within
``RENEW_BEFORE``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ruby_ctl.files import write_private, write_public

CA_VALIDITY: Final = dt.timedelta(days=3650)
SERVER_VALIDITY: Final = dt.timedelta(days=397)
RENEW_BEFORE: Final = dt.timedelta(days=30)
SERVER_NAMES: Final = ("localhost",)
SERVER_IPS: Final = ("127.0.0.1",)


@dataclass(frozen=True)
class PkiPaths:
    """Where the installation's TLS files live (``<state>/pki``)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


class CaKey:
    """The CA's private key (PEM). Never in ``repr``; kept in Vault, not on disk."""

    __slots__ = ("_pem",)

    def __init__(self, pem: str) -> None:
        self._pem = pem

    def reveal(self) -> str:
        return self._pem

    def __repr__(self) -> str:
        return "CaKey('[REDACTED]')"

    __str__ = __repr__


def new_ca(paths: PkiPaths, installation: str) -> CaKey:
    """Create a CA, write its certificate to ``ca.pem``, and return its private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"Ruby Core local CA ({installation})")]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_public(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CaKey(pem.decode())


def ca_matches(paths: PkiPaths, ca_key: CaKey) -> bool:
    """Whether ``ca.pem`` exists, is a valid CA certificate, and belongs to ``ca_key``."""
    ca = _load_cert(paths.ca_cert)
    if ca is None or _expires_soon(ca):
        return False
    key = serialization.load_pem_private_key(ca_key.reveal().encode(), password=None)
    return ca.public_key() == key.public_key()


def server_cert_ok(paths: PkiPaths) -> bool:
    """Whether the server certificate is present, issued by the CA, named, keyed and current."""
    ca, cert = _load_cert(paths.ca_cert), _load_cert(paths.server_cert)
    if ca is None or cert is None or _expires_soon(cert):
        return False
    try:
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(paths.server_key.read_bytes(), password=None)
    except (InvalidSignature, ValueError, TypeError, OSError):
        return False
    if key.public_key() != cert.public_key():
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(names.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return set(SERVER_NAMES) <= dns and set(SERVER_IPS) <= ips


def issue_server_cert(paths: PkiPaths, ca_key: CaKey) -> None:
    """Issue a new server key and certificate for 127.0.0.1 / localhost, signed by the CA."""
    ca = _load_cert(paths.ca_cert)
    if ca is None:
        raise ValueError(f"no CA certificate at {paths.ca_cert}")
    signer = serialization.load_pem_private_key(ca_key.reveal().encode(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in SERVER_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    write_private(
        paths.server_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM))


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _expires_soon(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - RENEW_BEFORE < _now()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
