"""TLS and mutual-TLS credentials for the gRPC channel, read from PEM files.

With `client_ca` set, the coordinator requires every client to present a certificate signed
by that CA (mutual TLS); a client without one, or with one from another CA, fails the
handshake and never reaches the service.
"""

from __future__ import annotations

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


def _read(path: Path | str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TLSConfigError(f"cannot read {what} {path}: {err.strerror}") from err
    if b"-----BEGIN" not in data:
        raise TLSConfigError(f"{what} {path} is not a PEM file")
    return data
