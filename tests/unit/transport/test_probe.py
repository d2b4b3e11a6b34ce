"""Address checks and the likely cause of a connection failure, over plain sockets."""

from __future__ import annotations

import socket

import pytest

from fedcore.transport.probe import AddressError, check_listen, diagnose, split_address


@pytest.mark.parametrize(("address", "parts"), [
    ("0.0.0.0:8080", ("0.0.0.0", 8080)), ("[::1]:0", ("::1", 0)), (":9", ("", 9)),
])
def test_split_reads_host_and_port(address: str, parts: tuple[str, int]) -> None:
    assert split_address(address) == parts


@pytest.mark.parametrize(("address", "words"), [
    ("127.0.0.1:83536", "port 83536 is out of range: use 0..65535"),
    ("localhost", "has no port"), ("localhost:http", "is not a number"),
])
def test_split_refuses_what_is_not_host_and_port(address: str, words: str) -> None:
    with pytest.raises(AddressError, match=words):
        split_address(address)


def test_a_listening_port_is_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        with pytest.raises(AddressError, match="address already in use"):
            check_listen(f"127.0.0.1:{port}")


def test_a_free_port_can_be_listened_on() -> None:
    check_listen("127.0.0.1:0")


def test_nothing_listening_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        assert "nothing is listening on" in diagnose(f"127.0.0.1:{port}", tls=False)


def test_an_unresolvable_host_is_named() -> None:
    assert "cannot resolve host 'no-such-host.invalid'" in diagnose(
        "no-such-host.invalid:8080", tls=False)
