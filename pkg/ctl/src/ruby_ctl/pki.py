"""The installation's local CA and the certificates it signs (``cryptography``), idempotently.

The CA's certificate is ``ca.pem`` (what every client trusts); its private key is handed to
the caller to keep in Vault and is never written to disk. It signs the `LEAVES`: nats-server's
certificate, Traefik's HTTPS certificate, the client certificate Traefik presents to the
gateway's API (the proof that a request passed the edge, ADR-0020), and the gateway API's own.
A server certificate names ``127.0.0.1`` and ``localhost``; Traefik's may name more, the
host names and addresses clients use to reach the API (``RUBY_API_HOSTNAMES``, `hostnames`,
needed when the compose files publish the API beyond this host). Each key is written 0600
because its server reads it from a file. `leaf_ok` is False, and bootstrap issues the leaf
again, when it is missing, does not match its key, was not issued by the CA, lacks a name
(one of the extra names too) or its usage, or expires within ``RENEW_BEFORE``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
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
_LABEL: Final = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME: Final = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
EDGE_CLIENT_CN: Final = "ruby-edge"
"""The common name of Traefik's client certificate: what the gateway's API requires."""


@dataclass(frozen=True)
class Leaf:
    """One certificate the CA signs: its file stem, what it is for, and how it is used."""

    name: str
    what: str
    common_name: str = "localhost"
    client: bool = False
    """A client certificate (TLS client auth, no names), else a server's for `SERVER_NAMES`."""


NATS_SERVER: Final = Leaf("server", "nats-server TLS certificate")
EDGE: Final = Leaf("edge", "Traefik's HTTPS certificate")
EDGE_CLIENT: Final = Leaf(
    "edge-client", "Traefik's client certificate to the gateway", EDGE_CLIENT_CN, client=True
)
GATEWAY_API: Final = Leaf("gateway-api", "the gateway API's TLS certificate")
LEAVES: Final = (NATS_SERVER, EDGE, EDGE_CLIENT, GATEWAY_API)


@dataclass(frozen=True)
class PkiPaths:
    """Where the installation's TLS files live (``<state>/pki``)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, leaf: Leaf) -> Path:
        return self.directory / f"{leaf.name}.pem"

    def key(self, leaf: Leaf) -> Path:
        return self.directory / f"{leaf.name}.key"

    @property
    def server_cert(self) -> Path:
        return self.cert(NATS_SERVER)

    @property
    def server_key(self) -> Path:
        return self.key(NATS_SERVER)


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


def hostnames(raw: str) -> tuple[str, ...]:
    """Extra names for a server certificate from a comma-separated list of DNS names and IP
    addresses (``ruby.example.lan, 192.168.1.20``); `ValueError` names one that is neither."""
    found: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            found.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        if not _HOSTNAME.fullmatch(item):
            raise ValueError(f"{item!r} is neither a host name nor an IP address")
        found.append(item.lower())
    return tuple(dict.fromkeys(found))


def _split(names: Sequence[str]) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) a server certificate must carry: ours and ``names``."""
    dns, ips = set(SERVER_NAMES), set(SERVER_IPS)
    for name in names:
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name)
    return dns, ips


def leaf_ok(paths: PkiPaths, leaf: Leaf, names: Sequence[str] = ()) -> bool:
    """Whether ``leaf`` is present, issued by the CA, named (``names`` too), keyed, for its
    usage and current."""
    ca, cert = _load_cert(paths.ca_cert), _load_cert(paths.cert(leaf))
    if ca is None or cert is None or _expires_soon(cert):
        return False
    try:
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(paths.key(leaf).read_bytes(), password=None)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (InvalidSignature, ValueError, TypeError, OSError, x509.ExtensionNotFound):
        return False
    if key.public_key() != cert.public_key() or _usage(leaf) not in usage:
        return False
    if leaf.client:
        return cert.subject == _subject(leaf)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    want_dns, want_ips = _split(names)
    return want_dns <= dns and want_ips <= ips


def _usage(leaf: Leaf) -> x509.ObjectIdentifier:
    return ExtendedKeyUsageOID.CLIENT_AUTH if leaf.client else ExtendedKeyUsageOID.SERVER_AUTH


def _subject(leaf: Leaf) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, leaf.common_name)])


def issue_leaf(paths: PkiPaths, ca_key: CaKey, leaf: Leaf, names: Sequence[str] = ()) -> None:
    """Issue a new key and certificate for ``leaf``, signed by the CA: a server's for
    127.0.0.1 / localhost and ``names``, or a client's named by its common name."""
    ca = _load_cert(paths.ca_cert)
    if ca is None:
        raise ValueError(f"no CA certificate at {paths.ca_cert}")
    signer = serialization.load_pem_private_key(ca_key.reveal().encode(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(leaf))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_usage(leaf)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if not leaf.client:
        dns, ips = _split(names)
        san = x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in sorted(dns)]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(ips)]
        )
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    write_private(
        paths.key(leaf),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(paths.cert(leaf), cert.public_bytes(serialization.Encoding.PEM))


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _expires_soon(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - RENEW_BEFORE < _now()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
