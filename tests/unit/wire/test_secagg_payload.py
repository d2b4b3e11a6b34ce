"""A masked input crosses the wire as a header plus its packed vector; wire/secagg.py splits
it into the two and joins them again."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.protocol.errors import WireError
from fedcore.protocol.specs import EMPTY_SPEC, spec_of
from fedcore.secagg.messages import GraphReveal, MaskedInput
from fedcore.secagg.packing import packed_size
from fedcore.wire.secagg import (
    client_message_from_proto,
    client_message_to_proto,
    client_payload,
    masked_payload_spec,
    with_payload,
)


def test_a_masked_input_is_split_into_header_and_payload_and_joined_again() -> None:
    data = bytes(range(256)) * 2
    sent = MaskedInput(sender=3, data=data)

    header = client_message_from_proto(client_message_to_proto(sent))
    payload = client_payload(sent)

    assert header == MaskedInput(sender=3, data=b"")
    assert with_payload(header, payload) == sent


def test_the_payload_spec_is_the_packed_vector() -> None:
    msg = MaskedInput(sender=1, data=b"")
    dim, bits = 1000, 24
    packed = MaskedInput(sender=1, data=bytes(packed_size(dim, bits)))

    assert masked_payload_spec(msg, dim=dim, bit_width=bits) == spec_of(client_payload(packed))
    assert masked_payload_spec(GraphReveal(sender=1, nonce=b"n"), dim=dim, bit_width=bits) == (
        EMPTY_SPEC
    )


def test_other_messages_have_no_payload() -> None:
    reveal = GraphReveal(sender=1, nonce=b"n")

    assert client_payload(reveal) == {}
    assert with_payload(reveal, {}) is reveal


def test_a_masked_input_without_its_payload_is_refused() -> None:
    with pytest.raises(WireError, match="masked"):
        with_payload(MaskedInput(sender=1, data=b""), {"other": np.zeros(1, np.uint8)})
