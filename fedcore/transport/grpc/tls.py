"""TLS and mutual-TLS credentials for the gRPC channel, read from PEM files.

With `client_ca` set, the coordinator requires every client to present a certificate signed
by that CA (mutual TLS); a client without one, or with one from another CA, fails the
handshake and never reaches the service. Binding client ids (`bound_id_refusal`): the service
admits a client only under an id its verified certificate names, its CN or a DNS SAN, so one
client's certificate cannot join (and cut the session of) another client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import grpc

from fedcore.errors import FedcoreError


class TLSConfigError(FedcoreError, ValueError):
    """A certificate or key file is missing or unreadable; the message names the file."""


def server_credentials(
    cert: Path | str, key: Path | str, client_ca: Path | str | None = None
) -> grpc.ServerCredentials:
    """Server credentials from PEM files; `client_ca` turns on mutual TLS.

    Raises:
        TLSConfigError: a file cannot be read.
    """
    pair = (_read(key, "TLS key"), _read(cert, "TLS certificate"))
    if client_ca:
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read(client_ca, "client CA"), require_client_auth=True
        )
    return grpc.ssl_server_credentials([pair])


def channel_credentials(
    ca: Path | str | None = None, cert: Path | str | None = None, key: Path | str | None = None
) -> grpc.ChannelCredentials:
    """Client credentials: trust `ca` (system roots when None); present `cert`/`key` for mTLS.

    Raises:
        TLSConfigError: a file cannot be read, or only one of `cert` and `key` is given.
    """
    if bool(cert) != bool(key):
        raise TLSConfigError("a client certificate needs its key: give both or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA certificate") if ca else None,
        private_key=_read(key, "TLS key") if key else None,
        certificate_chain=_read(cert, "TLS certificate") if cert else None,
    )


# gRPC's auth-context properties of a verified peer certificate: its subject CN, and its DNS
# SANs (older gRPC releases list SANs only under the generic key, which then stands in).
_CN = "x509_common_name"
_DNS = "x509_dns"
_SAN = "x509_subject_alternative_name"


def peer_identities(auth_context: Mapping[str, Iterable[bytes]]) -> frozenset[str]:
    """The names a connection's verified client certificate gives its holder: its CN and its
    DNS SANs (empty without a client certificate). `auth_context` is gRPC's
    `ServicerContext.auth_context()`."""
    sans = auth_context.get(_DNS) or auth_context.get(_SAN) or ()
    names = [*auth_context.get(_CN, ()), *sans]
    return frozenset(n.decode("utf-8", "replace") for n in names if n)


def bound_id_refusal(client_id: str, identities: frozenset[str]) -> str:
    """Why `client_id` may not join over a connection whose certificate names `identities`
    ("" when it may: the id is one of them)."""
    if client_id in identities:
        return ""
    if not identities:
        return ("this coordinator binds client ids to client certificates (mutual TLS), and "
                "the connection presented none")
    shown = ", ".join(sorted(identities)[:4])
    return (f"client id {client_id[:64]!r} is not named by this connection's certificate "
            f"({shown}): join under that name (--client-id), or use a certificate issued for "
            "this id")


def _read(path: Path | str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TLSConfigError(f"cannot read {what} {path}: {err.strerror}") from err
    if b"-----BEGIN" not in data:
        raise TLSConfigError(f"{what} {path} is not a PEM file")
    return data
