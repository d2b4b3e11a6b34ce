"""A client that declines a secure-aggregation round over real gRPC counts as dropped at once:
the round goes on without waiting for the phase deadline."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import DeclineTask, EvalResult, FitResult, FunctionalApp
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.strategy import FedAvg

from .conftest import run_over_grpc

pytestmark = pytest.mark.timeout(60)
PHASE_TIMEOUT_S = 3600.0  # a phase that waited for its deadline would outlast the test
ADDS = [0.1, 0.2, 0.3]


def app(add: float | None) -> FunctionalApp:
    """Adds `add` to every parameter; None declines every round."""

    def fit(params, config):  # type: ignore[no-untyped-def]
        if add is None:
            raise DeclineTask("not today")
        return FitResult(params={k: v + np.float32(add) for k, v in params.items()},
                         num_examples=10)

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(3, np.float32)}, fit=fit,
                         evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))


def test_one_declining_client_does_not_make_a_secure_round_wait_the_phase_timeout() -> None:
    # arrange: 4 clients, t = 3; one declines
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=2 * PHASE_TIMEOUT_S,
                     train=SelectionConfig(fraction=1.0, min_available=4, min_results=3),
                     secagg=SecureAggregationConfig(max_clients=10, clip=1.0, weight_cap=10,
                                                    phase_timeout_s=PHASE_TIMEOUT_S)),
        FedAvg(), initial_params={"w": np.zeros(3, np.float32)},
    )

    # act: the run must end within 50 s, so no phase may wait for its (hour-long) deadline
    run_over_grpc(engine, [app(a) for a in ADDS] + [app(None)], timeout=50)

    # assert: the round summed exactly the three who trained
    (record,) = engine.records
    assert (record.status, record.results_received) == ("ok", 3), record.reason
    np.testing.assert_allclose(engine.params["w"], np.mean(ADDS), atol=1e-6)
