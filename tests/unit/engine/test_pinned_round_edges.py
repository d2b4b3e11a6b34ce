"""Round-engine edges: num_examples up to MAX_EXAMPLES inclusive, the 64 most recently closed
tasks answered LATE (older ones are unknown), and an integer update whose implied local value
leaves the dtype refused with nothing changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.engine.collect import MAX_EXAMPLES
from fedcore.engine.errors import EngineError, Reason


def test_the_maximum_is_the_protocols_2_to_the_40() -> None:
    # other languages' clients implement the range from docs/protocol.md, not from this constant
    protocol = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text()
    assert "examples behind the result, 1..2^40" in protocol
    assert MAX_EXAMPLES == 2**40


def test_num_examples_up_to_the_maximum_is_taken(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(clients=2, num_rounds=2)
    tasks = h.tasks()
    before = h.snapshot()
    with pytest.raises(EngineError) as err:
        h.submit("c0", tasks["c0"], h.delta(1.0), num_examples=MAX_EXAMPLES + 1)
    assert err.value.reason is Reason.INVALID and h.snapshot() == before
    h.submit("c0", tasks["c0"], h.delta(1.0), num_examples=MAX_EXAMPLES)
    h.submit("c1", tasks["c1"], h.delta(3.0), num_examples=MAX_EXAMPLES)
    assert h.engine.round_number >= 1 and h.engine.records[0].results_received == 2
    np.testing.assert_allclose(h.engine.params["w"], [3.0, 4.0])  # + the mean, 2


def test_the_64_most_recently_closed_tasks_are_late_older_ones_unknown(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(clients=1, num_rounds=70)
    played = [h.play_round({"c0": (0.0, 1)})["c0"] for _ in range(65)]
    assert len({t.task_id for t in played}) == 65
    with pytest.raises(EngineError) as oldest:
        h.submit("c0", played[0])
    assert oldest.value.reason is Reason.NOT_ASSIGNED  # forgotten: 65 closed since
    for kept in (played[1], played[-1]):  # the 64th most recent and the last
        with pytest.raises(EngineError) as late:
            h.submit("c0", kept)
        assert late.value.reason is Reason.LATE


def test_an_integer_update_beyond_the_dtype_is_refused_and_changes_nothing(make_harness) -> None:  # type: ignore[no-untyped-def]
    initial = {"w": np.zeros(2, np.float32), "n": np.array([100], np.int8)}
    h = make_harness(clients=1, num_rounds=2, initial=initial)
    [task] = h.tasks().values()
    before = h.snapshot()
    with pytest.raises(EngineError) as err:
        h.submit("c0", task, {"w": np.zeros(2, np.float32), "n": np.array([28], np.int8)})
    assert err.value.reason is Reason.INVALID and h.snapshot() == before
    h.submit("c0", task, {"w": np.zeros(2, np.float32), "n": np.array([27], np.int8)})
    assert h.engine.params["n"].tolist() == [127] and h.engine.params["n"].dtype == np.int8


def _secure_round() -> object:
    from fedcore.engine.config import SecureAggregationConfig
    from fedcore.engine.secure_round import SecureRound
    from fedcore.protocol.specs import spec_of

    config = SecureAggregationConfig(max_clients=10, clip=1.0, weight_cap=10, phase_timeout_s=30.0)
    return SecureRound(config, selected=["a", "b", "c"], model_spec=spec_of(
        {"w": np.zeros(2, np.float32)}), round_id=1, graph_seed=bytes(32), now=0.0)


def test_a_protocol_phase_closes_at_its_deadline_not_before() -> None:
    from fedcore.secagg.server import Phase as ServerPhase

    secure = _secure_round()
    assert secure.progress() is ServerPhase.COLLECT_KEYS  # type: ignore[attr-defined]
    assert secure.inner_deadline() == 30.0  # type: ignore[attr-defined]
    secure.on_time(29.999)  # type: ignore[attr-defined]
    assert secure.progress() is ServerPhase.COLLECT_KEYS and not secure.finished  # type: ignore[attr-defined]
    secure.on_time(30.0)  # type: ignore[attr-defined]
    # nobody advertised keys: the key phase closes with too few clients and the round aborts
    assert secure.finished and secure.progress() is ServerPhase.ABORTED  # type: ignore[attr-defined]
    assert secure.inner_deadline() is None  # type: ignore[attr-defined]
