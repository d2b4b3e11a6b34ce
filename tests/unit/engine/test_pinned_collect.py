"""A plain round's result checks that coverage of the engine tests found unexercised: a result
that carries a secure-aggregation message for a task without it, and compressed updates (a
well-formed one is decoded and counts as its dense update; a malformed one is refused and
changes nothing). Built on tests/unit/engine/test_bad_input.py's round 2."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.compression.codec import Compression, Compressor, Kind, MemoryStore
from fedcore.engine import EngineError, Phase, Reason
from fedcore.protocol.messages import ResultHeader, TaskResult
from fedcore.protocol.specs import spec_of
from fedcore.secagg.messages import GraphReveal

from .test_bad_input import finish, start


def test_a_secure_message_on_a_plain_task_is_refused_and_changes_nothing(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = start(make_harness)
    before = h.snapshot()
    tensors = h.delta(1.0)
    header = ResultHeader(client_id="c0", task_id=h.tasks_now["c0"].task_id, num_examples=1,
                          spec=spec_of(tensors), secagg=GraphReveal(sender=1, nonce=bytes(32)))

    with pytest.raises(EngineError) as err:
        h.engine.submit(TaskResult(header=header, tensors=tensors), now=h.now)

    assert err.value.reason is Reason.INVALID
    assert h.snapshot() == before


def _dense_run(make_harness) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    h = start(make_harness)
    finish(h)
    return h.params_bytes()


def test_a_lossless_top_k_update_counts_as_its_dense_update(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = start(make_harness)
    compressor = Compressor(Compression(kind=Kind.TOPK, fraction=1.0), store=MemoryStore())
    compressed = compressor.compress(h.delta(1.0))  # c0's update, every entry kept
    assert spec_of(compressed) != spec_of(h.delta(1.0))  # it travels compressed

    h.submit("c0", h.tasks_now["c0"], compressed, num_examples=1)
    h.submit("c2", h.tasks_now["c2"], h.delta(4.0), num_examples=5)

    assert h.engine.phase is Phase.DONE
    assert h.params_bytes() == _dense_run(make_harness)


def test_a_malformed_compressed_update_is_refused_and_changes_nothing(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = start(make_harness)
    compressor = Compressor(Compression(kind=Kind.TOPK, fraction=1.0), store=MemoryStore())
    compressed = compressor.compress(h.delta(1.0))
    name = next(k for k, v in compressed.items() if np.issubdtype(v.dtype, np.integer))
    bad = dict(compressed)
    bad[name] = np.full_like(compressed[name], 10**6)  # indices far outside the tensor
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.submit("c0", h.tasks_now["c0"], bad, num_examples=1)

    assert err.value.reason is Reason.INVALID
    assert h.snapshot() == before
    finish(h)
    assert h.params_bytes() == _dense_run(make_harness)


@pytest.mark.parametrize(("limit", "accepted"), [(12, True), (11, False)])
def test_a_payload_of_exactly_max_payload_bytes_is_accepted(make_harness, limit: int,  # type: ignore[no-untyped-def]
                                                            accepted: bool) -> None:
    h = make_harness(clients=1, max_payload_bytes=limit)  # the model: 3 float32, 12 bytes
    [(cid, task)] = h.tasks().items()
    assert spec_of(h.delta(1.0)).nbytes == 12

    if accepted:
        h.submit(cid, task, h.delta(1.0), num_examples=1)
        assert h.engine.round_number == 1
    else:
        before = h.snapshot()
        with pytest.raises(EngineError) as err:
            h.submit(cid, task, h.delta(1.0), num_examples=1)
        assert err.value.reason is Reason.TOO_LARGE
        assert h.snapshot() == before
