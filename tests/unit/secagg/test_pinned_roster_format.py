"""A roster file's `format` must be the JSON integer 1: `true` and `1.0` equal 1 in Python
and were once read as format 1."""

from __future__ import annotations

import pytest

from fedcore.secagg.roster import Roster, RosterError


@pytest.mark.parametrize("fmt", ["true", "1.0", '"1"', "2", "null"])
def test_a_format_field_that_is_not_the_integer_1_is_refused(fmt: str) -> None:
    with pytest.raises(RosterError):
        Roster.from_json('{"format": ' + fmt + ', "clients": {}}')
