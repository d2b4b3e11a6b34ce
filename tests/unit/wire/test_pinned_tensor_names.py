"""A tensor name on the wire has 1 to 1024 characters: 1024 is read, 1025 refused (an untrusted
peer's spec cannot carry names beyond the documented bound), an empty name refused."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.protocol.errors import WireError
from fedcore.protocol.specs import spec_of
from fedcore.wire import convert


def _proto(name: str) -> object:
    return convert.spec_to_proto(spec_of({name: np.zeros(2, np.float32)}))


def test_a_name_of_1024_characters_is_read_and_1025_refused() -> None:
    longest = "w" * 1024
    assert convert.spec_from_proto(_proto(longest)).tensors[0].name == longest  # type: ignore[arg-type]
    with pytest.raises(WireError):
        convert.spec_from_proto(_proto("w" * 1025))  # type: ignore[arg-type]
    assert convert.spec_from_proto(_proto("w")).tensors[0].name == "w"  # type: ignore[arg-type]
