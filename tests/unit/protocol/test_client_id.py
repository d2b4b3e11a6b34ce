"""Client ids: 1..256 bytes of visible ASCII (docs/protocol.md 3.1), edge cases."""

from __future__ import annotations

import pytest

from fedcore.protocol.client_id import MAX_CLIENT_ID_BYTES, check_client_id, client_id_problem


@pytest.mark.parametrize(
    "client_id",
    ["a", "client-0a1b2c3d4e5f", "x" * MAX_CLIENT_ID_BYTES, "!~", "node_7.eu/west:3@lab#1"],
)
def test_visible_ascii_ids_of_1_to_256_bytes_are_valid(client_id: str) -> None:
    assert client_id_problem(client_id) == ""


@pytest.mark.parametrize(
    ("client_id", "says"),
    [
        ("", "1..256 bytes, got 0"),
        ("x" * (MAX_CLIENT_ID_BYTES + 1), "got 257"),
        ("my phone", "not ' '"),
        ("a\tb", "U+0009"),
        ("a\nb", "U+000A"),
        ("a\x7fb", "U+007F"),
        ("caf\u00e9", "U+00E9"),  # 5 bytes, non-ASCII
        ("\u00e9" * 200, "got 400"),  # 200 characters but 400 bytes: counted in bytes
        ("\u200b", "U+200B"),  # a zero-width space: looks like nothing
        ("\ud800", "U+D800"),  # a lone surrogate (not even encodable as UTF-8)
    ],
)
def test_other_ids_are_refused_naming_the_rule(client_id: str, says: str) -> None:
    with pytest.raises(ValueError, match="client_id") as caught:
        check_client_id(client_id)

    assert says in str(caught.value)


@pytest.mark.parametrize("client_id", ["my phone", "caf\u00e9"])
def test_the_sdk_refuses_a_bad_id_at_start_before_connecting(client_id: str) -> None:
    from fedcore.client import EvalResult, FitResult, FunctionalApp
    from fedcore.transport.grpc.client import run_client

    app = FunctionalApp(get_parameters=dict,
                        fit=lambda p, c: FitResult(params=dict(p), num_examples=1),
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))

    with pytest.raises(ValueError, match="visible ASCII"):
        run_client(app, "127.0.0.1:9", client_id=client_id)  # nothing listens: never reached
