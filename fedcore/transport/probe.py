"""Socket-level checks of a coordinator address, for messages that say what to do.

`split_address` reads "host:port"; `check_listen` says, before a coordinator starts, why it
could not listen there (a port out of range, a name that does not resolve, an address in use);
`diagnose` says why a client cannot reach one (nothing listening, TLS on one side only, a name
that does not resolve). Plain sockets and `ssl`: no gRPC, so the answers do not depend on how
a gRPC version words its errors.
"""

from __future__ import annotations

import errno
import socket
import ssl

from fedcore.errors import FedcoreError

MAX_PORT = 65535


class AddressError(FedcoreError, ValueError):
    """An address cannot be used; the message says why and what to do."""


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[ipv6]:port"; the host may be empty (all interfaces).

    Raises:
        AddressError: no port, or a port that is not an integer in 0..65535.
    """
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise AddressError(f"{address!r} has no port: write host:port, e.g. 0.0.0.0:8080")
    try:
        port = int(port_text)
    except ValueError:
        raise AddressError(f"{address!r}: the port {port_text!r} is not a number") from None
    if not 0 <= port <= MAX_PORT:
        raise AddressError(f"{address!r}: port {port} is out of range: use 0..{MAX_PORT} "
                           "(0: any free port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def check_listen(address: str) -> None:
    """Check that a server could listen on `address` now (binds and releases a socket).

    Raises:
        AddressError: the port is out of range, the host does not resolve or is not this
            machine's, or the address is already in use.
    """
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise AddressError(f"cannot resolve host {host!r} ({err.strerror}): use an IP address "
                           "or a name this machine resolves, e.g. 0.0.0.0 for all interfaces"
                           ) from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's listener does
        try:
            sock.bind(sockaddr)
        except OSError as err:
            raise AddressError(_bind_failure(address, port, err)) from None


def _bind_failure(address: str, port: int, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return (f"{address}: address already in use (another process listens on port {port}): "
                "stop it or choose another port")
    if err.errno == errno.EADDRNOTAVAIL:
        return f"{address}: the host is not an address of this machine: use 0.0.0.0 or one of its IPs"
    if err.errno == errno.EACCES:
        return f"{address}: permission denied: ports below 1024 need privileges, use another port"
    return f"{address}: cannot listen: {err.strerror}"


def diagnose(address: str, *, tls: bool, timeout_s: float = 2.0) -> str:
    """The likely reason a client cannot reach a coordinator at `address`, and what to do.

    Args:
        address: host:port the client connects to.
        tls: whether the client connects with TLS.
        timeout_s: for each of the resolution, the connection and the TLS handshake.
    """
    try:
        host, port = split_address(address)
    except AddressError as err:
        return str(err)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return (f"cannot resolve host {host!r} ({err.strerror}): check the host name of the "
                "coordinator's address")
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except ConnectionRefusedError:
        return (f"nothing is listening on {address}: is the coordinator running, and on this "
                "port?")
    except TimeoutError:
        return (f"no answer from {address} within {timeout_s:g}s: the wrong host, or a firewall "
                "drops the connection")
    except OSError as err:
        return f"cannot connect to {address}: {err.strerror}"
    speaks_tls = _speaks_tls(sock, host, timeout_s)
    if speaks_tls and not tls:
        return (f"{address} speaks TLS but this client connects in plaintext: give the client "
                "the CA that signed the coordinator's certificate (fedcore --tls-ca CA.pem)")
    if speaks_tls is False and tls:
        return (f"{address} speaks plaintext but this client uses TLS: connect without TLS "
                "(no --tls-ca), or start the coordinator with --tls-cert and --tls-key")
    if speaks_tls and tls:
        return (f"{address} speaks TLS but the handshake failed: check that --tls-ca signed "
                "the coordinator's certificate, that the certificate names this host, and "
                "whether the coordinator requires a client certificate (--tls-cert, --tls-key)")
    return f"{address} accepts connections: see the coordinator's log for why it does not answer"


def _speaks_tls(sock: socket.socket, host: str, timeout_s: float) -> bool | None:
    """Whether the peer on `sock` answers a TLS handshake (None: it did not say); closes `sock`.

    A TLS server completes the handshake, or refuses it with a TLS alert (e.g. it wants a
    client certificate); a plaintext HTTP/2 server answers with something that is not TLS,
    or hangs up."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a probe of the protocol only: nothing is sent after
    context.set_alpn_protocols(["h2"])
    sock.settimeout(timeout_s)
    try:
        with context.wrap_socket(sock, server_hostname=host or None):
            return True
    except ssl.SSLError as err:
        return "ALERT" in (err.reason or "").upper()
    except (ConnectionError, EOFError):
        return False
    except OSError:
        return None
    finally:
        sock.close()
