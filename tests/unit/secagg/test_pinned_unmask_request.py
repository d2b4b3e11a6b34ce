"""An unmasking request naming a client this client holds no shares of (as survivor or as
dropped) is refused with a ProtocolError before anything is released, and the client is left
as it was (the honest request is then answered)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.messages import UnmaskRequest
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, snapshot

N, T = 5, 3


@pytest.mark.parametrize("field", ["survivors", "dropped"])
def test_a_request_naming_a_stranger_is_refused_and_releases_nothing(field: str) -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    honest = next(m for m in requests if isinstance(m, UnmaskRequest) and m.recipient == 1)
    forged = replace(honest, **{field: (*getattr(honest, field), N + 1)})
    client = cohort.clients[1]
    before = snapshot(client)
    with pytest.raises(ProtocolError):
        client.handle(forged)
    assert snapshot(client) == before
    assert client.handle(honest)
