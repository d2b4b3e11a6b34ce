"""Every refused request names its reason and leaves the engine exactly as it was.

Round 2 of a run is under test: c1 has already reported when the bad request arrives, and
afterwards c0 and c2 report normally; the final model must equal the one from a run that never
saw the bad request.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fedcore.engine import EngineError, Phase, Reason, SelectionConfig
from fedcore.engine.collect import MAX_EXAMPLES
from fedcore.protocol.messages import PROTOCOL_VERSION, ResultHeader, TaskResult
from fedcore.protocol.specs import ModelSpec, TensorSpec, spec_of

GOOD = {"c0": (1.0, 1), "c1": (2.0, 2), "c2": (4.0, 5)}


def start(make_harness):
    """Round 1 played; round 2 open with c0..c2 selected, c1 reported; c3 joined unselected."""
    h = make_harness(clients=3, num_rounds=2, train=SelectionConfig(count=3, min_available=3))
    h.previous = h.play_round(GOOD)
    h.tasks_now = h.tasks()
    h.join("c3")
    h.submit("c1", h.tasks_now["c1"], h.delta(2.0), num_examples=2)
    return h


def finish(h) -> None:
    for cid in ("c0", "c2"):
        value, n = GOOD[cid]
        h.submit(cid, h.tasks_now[cid], h.delta(value), num_examples=n)


def with_value(h, name: str, value: float) -> dict[str, np.ndarray]:
    tensors = h.delta(1.0)
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = value
    return tensors


def model_spec(h) -> ModelSpec:
    return spec_of(h.engine.params)


Bad = Callable[..., None]

BAD_REQUESTS: dict[str, tuple[Bad, Reason]] = {
    "announced wrong shape": (
        lambda h, t: h.submit("c0", t["c0"], {**h.delta(1.0), "w": np.ones(3, np.float32)}),
        Reason.INVALID,
    ),
    "payload wrong shape": (
        lambda h, t: h.submit(
            "c0", t["c0"], {**h.delta(1.0), "w": np.ones(3, np.float32)}, spec=model_spec(h)
        ),
        Reason.INVALID,
    ),
    "announced wrong dtype": (
        lambda h, t: h.submit(
            "c0", t["c0"], {k: v.astype(np.float64) for k, v in h.delta(1.0).items()}
        ),
        Reason.INVALID,
    ),
    "payload wrong dtype": (
        lambda h, t: h.submit(
            "c0",
            t["c0"],
            {k: v.astype(np.float16) for k, v in h.delta(1.0).items()},
            spec=model_spec(h),
        ),
        Reason.INVALID,
    ),
    "missing tensor": (
        lambda h, t: h.submit("c0", t["c0"], {"w": h.delta(1.0)["w"]}),
        Reason.INVALID,
    ),
    "extra tensor": (
        lambda h, t: h.submit("c0", t["c0"], {**h.delta(1.0), "x": np.ones(1, np.float32)}),
        Reason.INVALID,
    ),
    "huge announced shape": (
        lambda h, t: h.submit(
            "c0",
            t["c0"],
            h.delta(1.0),
            spec=ModelSpec(
                tensors=(
                    TensorSpec(name="w", dtype=np.dtype("float32"), shape=(2**62, 4)),
                    TensorSpec(name="b", dtype=np.dtype("float32"), shape=()),
                )
            ),
        ),
        Reason.INVALID,
    ),
    "nan": (lambda h, t: h.submit("c0", t["c0"], with_value(h, "w", np.nan)), Reason.INVALID),
    "inf": (lambda h, t: h.submit("c0", t["c0"], with_value(h, "b", np.inf)), Reason.INVALID),
    "-inf": (lambda h, t: h.submit("c0", t["c0"], with_value(h, "w", -np.inf)), Reason.INVALID),
    "zero examples": (
        lambda h, t: h.submit("c0", t["c0"], h.delta(1.0), num_examples=0),
        Reason.INVALID,
    ),
    "negative examples": (
        lambda h, t: h.submit("c0", t["c0"], h.delta(1.0), num_examples=-5),
        Reason.INVALID,
    ),
    "too many examples": (
        lambda h, t: h.submit("c0", t["c0"], h.delta(1.0), num_examples=MAX_EXAMPLES + 1),
        Reason.INVALID,
    ),
    "unknown client in header": (
        lambda h, t: h.submit("c0", t["c0"], h.delta(1.0), client_id="ghost"),
        Reason.NOT_ASSIGNED,
    ),
    "unselected client": (lambda h, t: h.submit("c3", t["c0"], h.delta(1.0)), Reason.NOT_ASSIGNED),
    "unknown task id": (
        lambda h, t: h.submit("c0", t["c0"], h.delta(1.0), task_id="t999-train-r2"),
        Reason.NOT_ASSIGNED,
    ),
    "previous round's task": (
        lambda h, t: h.submit("c0", h.previous["c0"], h.delta(1.0)),
        Reason.LATE,
    ),
    "replayed submission": (
        lambda h, t: h.submit("c1", t["c1"], h.delta(2.0), num_examples=2),
        Reason.DUPLICATE,
    ),
    "unknown client credentials": (
        lambda h, t: h.engine.authenticate("ghost", b"\x00" * 16, now=h.now),
        Reason.UNKNOWN_CLIENT,
    ),
    "wrong session": (
        lambda h, t: h.engine.authenticate("c0", b"\xff" * 16, now=h.now),
        Reason.UNAUTHENTICATED,
    ),
    "download for another client's task": (
        lambda h, t: h.engine.model_for("c3", t["c0"].task_id, now=h.now),
        Reason.NOT_ASSIGNED,
    ),
    "join with another protocol version": (
        lambda h, t: h.engine.join("c9", now=h.now, protocol_version=PROTOCOL_VERSION + 1),
        Reason.UNSUPPORTED,
    ),
    "join with an empty client id": (lambda h, t: h.engine.join("", now=h.now), Reason.INVALID),
}


@pytest.fixture
def reference_params(make_harness) -> dict[str, bytes]:
    h = start(make_harness)
    finish(h)
    assert h.engine.phase is Phase.DONE
    return h.params_bytes()


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_request_is_refused_with_its_reason(make_harness, case: str) -> None:
    bad, reason = BAD_REQUESTS[case]
    h = start(make_harness)

    with pytest.raises(EngineError) as err:
        bad(h, h.tasks_now)

    assert err.value.reason is reason


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_request_changes_nothing(make_harness, case: str) -> None:
    bad, _ = BAD_REQUESTS[case]
    h = start(make_harness)
    before = h.snapshot()

    with pytest.raises(EngineError):
        bad(h, h.tasks_now)

    assert h.snapshot() == before


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_request_leaves_the_final_model_as_without_it(
    make_harness, reference_params: dict[str, bytes], case: str
) -> None:
    bad, _ = BAD_REQUESTS[case]
    h = start(make_harness)
    with pytest.raises(EngineError):
        bad(h, h.tasks_now)

    finish(h)

    assert h.engine.records[-1].results_received == 3
    assert h.params_bytes() == reference_params


def test_stale_session_after_rejoin_is_refused(make_harness) -> None:
    h = start(make_harness)
    old = h.sessions["c0"]
    h.join("c0")
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.engine.authenticate("c0", old, now=h.now)

    assert err.value.reason is Reason.UNAUTHENTICATED
    assert h.snapshot() == before


def test_payload_over_max_payload_bytes_is_refused(make_harness) -> None:
    h = make_harness(clients=1, max_payload_bytes=8)  # the model is 12 bytes
    task = h.poll("c0")
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.submit("c0", task, h.delta(1.0))

    assert err.value.reason is Reason.TOO_LARGE
    assert h.snapshot() == before


def test_big_endian_update_is_accepted_as_native(make_harness, reference_params) -> None:
    h = start(make_harness)
    value, n = GOOD["c0"]
    big = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in h.delta(value).items()}
    h.submit("c0", h.tasks_now["c0"], big, num_examples=n)
    value, n = GOOD["c2"]

    h.submit("c2", h.tasks_now["c2"], h.delta(value), num_examples=n)

    assert h.params_bytes() == reference_params


def test_result_from_a_client_that_left_is_late(make_harness) -> None:
    h = start(make_harness)
    h.engine.leave("c0", now=h.now)
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.engine.submit(_result("c0", h.tasks_now["c0"].task_id, h.delta(1.0)), now=h.now)

    assert err.value.reason is Reason.LATE
    assert h.snapshot() == before


def _result(cid: str, task_id: str, tensors, num_examples: int = 1) -> TaskResult:
    """A result handed to the engine as is (the harness would copy the tensors)."""
    header = ResultHeader(
        client_id=cid, task_id=task_id, num_examples=num_examples, spec=spec_of(tensors)
    )
    return TaskResult(header=header, tensors=tensors)


def test_read_only_update_is_accepted(make_harness, reference_params) -> None:
    h = start(make_harness)
    value, n = GOOD["c0"]
    frozen = h.delta(value)
    for array in frozen.values():
        array.flags.writeable = False
    h.engine.authenticate("c0", h.sessions["c0"], now=h.now)
    h.engine.submit(_result("c0", h.tasks_now["c0"].task_id, frozen, num_examples=n), now=h.now)
    value, n = GOOD["c2"]

    h.submit("c2", h.tasks_now["c2"], h.delta(value), num_examples=n)

    assert h.params_bytes() == reference_params
