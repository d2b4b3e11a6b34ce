"""`fedcore certs`: a demo PKI, i.e. a CA, a server certificate and client certificates.

Files written to the output directory (private keys with mode 0600):

    ca.pem ca-key.pem                 the certificate authority
    server.pem server-key.pem         the coordinator; SANs: localhost, 127.0.0.1, ::1, hosts
    client-<i>.pem client-<i>-key.pem one per client (i = 1..n), CN and DNS SAN client-<i>
    <name>.pem <name>-key.pem         or one per given client name, CN and DNS SAN <name>
    token                             a random shared token, when asked for

Each client gets its own certificate: with mutual TLS the coordinator admits a client only
under the id its certificate names (`fedcore.transport.grpc.tls.bound_id_refusal`), so the
name is the client's id (`client_identity` reads it back; `fedcore client` defaults to it).
For demos and tests. A production deployment uses its own PKI; fedcore only reads PEM files.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcore.storage.atomic import write_atomic

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
VALIDITY = datetime.timedelta(days=365)
KEY_MODE = 0o600
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RESERVED_NAMES = frozenset({"ca", "server", "token"})


@dataclass(frozen=True, slots=True)
class Issuer:
    """A certificate and the key that signs with it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def generate_pki(
    out_dir: Path, *, clients: int = 0, names: Sequence[str] = (), hosts: tuple[str, ...] = (),
    token: bool = False, force: bool = False,
) -> list[Path]:
    """Write a CA, a server certificate for `hosts` and one certificate per client: `clients`
    of them named client-1..client-<clients>, or one per name in `names`.

    Returns the files written; an existing `ca.pem` is kept (nothing written) unless `force`.

    Raises:
        ValueError: `clients` is negative, both `clients` and `names` are given, or a name is
            not 1-63 letters, digits, '.', '_' or '-' (starting with a letter or digit), is
            reserved (ca, server, token) or repeated.
    """
    if clients < 0:
        raise ValueError(f"--clients must be >= 0, got {clients}")
    if clients and names:
        raise ValueError("give --clients or --names, not both")
    client_names = list(names) or [f"client-{i}" for i in range(1, clients + 1)]
    check_client_names(client_names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.pem").exists() and not force:
        return []
    ca = make_ca("fedcore demo CA")
    written = _write_pair(out, "ca", ca)
    server_hosts = tuple(dict.fromkeys((*DEFAULT_HOSTS, *hosts)))
    written += _write_pair(out, "server", issue(ca, "fedcore coordinator", hosts=server_hosts))
    for name in client_names:
        written += _write_pair(out, name, issue(ca, name, hosts=(name,), client=True))
    if token:
        path = out / "token"
        write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=KEY_MODE)
        written.append(path)
    return written


def check_client_names(names: Sequence[str]) -> None:
    """Raise ValueError unless every name can be a client id and a file name (see
    `generate_pki`)."""
    for name in names:
        if not CLIENT_NAME.fullmatch(name) or name.lower() in RESERVED_NAMES:
            raise ValueError(f"client name {name!r} must be 1-63 letters, digits, '.', '_' or "
                             "'-', start with a letter or digit, and not be ca, server or token")
    if len(set(names)) != len(names):
        raise ValueError("client names must be distinct")


def client_identity(cert_pem: bytes) -> str:
    """The client id a client certificate names: its CN, else its first DNS SAN.

    Raises:
        ValueError: the PEM holds no certificate, or one that names nobody.
    """
    cert = x509.load_pem_x509_certificate(cert_pem)
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attribute.value, str) and attribute.value:
            return attribute.value
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    dns = san.get_values_for_type(x509.DNSName) if san is not None else []
    if not dns:
        raise ValueError("the client certificate names no identity (no CN, no DNS SAN)")
    return str(dns[0])


def make_ca(name: str) -> Issuer:
    """A self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        _base(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    return Issuer(builder.sign(key, hashes.SHA256()), key)


def issue(ca: Issuer, name: str, *, hosts: tuple[str, ...] = (), client: bool = False) -> Issuer:
    """A leaf certificate signed by `ca`: a server one for `hosts`, or a client one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _base(subject, ca.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False
        )
    return Issuer(builder.sign(ca.key, hashes.SHA256()), key)


def _base(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_pair(out: Path, stem: str, item: Issuer) -> list[Path]:
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}-key.pem"
    write_atomic(cert_path, item.cert.public_bytes(serialization.Encoding.PEM))
    key_pem = item.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(key_path, key_pem, mode=KEY_MODE)  # the temp file is 0600 from the start
    return [cert_path, key_path]
