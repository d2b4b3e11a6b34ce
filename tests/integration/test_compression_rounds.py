"""Compressed uploads in plain rounds: decoded by the coordinator before aggregation, their bytes
in the round's history, the same in simulation and over gRPC (top-k is deterministic), and the
top-k residual kept in each client's state directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.client import BackgroundClient, EvalResult, FitResult, FunctionalApp, TrainConfig
from fedcore.compression.codec import UPLOAD_BYTES, Compression, Kind
from fedcore.sim.compression import compressing_handlers
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver, SimulationResult
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

pytestmark = pytest.mark.timeout(120)

CLIENTS, FEATURES, ROUNDS = 3, 40, 3
INITIAL = {"w": np.zeros(FEATURES, np.float32), "b": np.zeros(1, np.float32)}
DENSE_BYTES = 4 * (FEATURES + 1)


def _data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([9, index])
    x = rng.normal(size=(30, FEATURES)).astype(np.float32)
    return x, (x @ rng.normal(size=FEATURES) + index).astype(np.float32)


def _app(index: int) -> FunctionalApp:
    x, y = _data(index)

    def fit(params: Params, config: TrainConfig) -> FitResult:
        w, b = params["w"].copy(), params["b"].copy()
        for _ in range(config.local_epochs):
            err = x @ w + b - y
            w -= config.learning_rate * (2 * x.T @ err / len(y)).astype(np.float32)
            b -= config.learning_rate * np.float32(2 * err.mean())
        return FitResult(params={"w": w, "b": b}, num_examples=len(y))

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        return EvalResult(loss=float(np.mean((x @ params["w"] + params["b"] - y) ** 2)),
                          num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: dict(INITIAL), fit=fit, evaluate=evaluate)


def _engine(registry: VirtualRegistry | None = None) -> RoundEngine:
    everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
    config = EngineConfig(num_rounds=ROUNDS, train=everyone, evaluate=None,
                          round_timeout_s=60.0, seed=4)
    return RoundEngine(config, FedAvg(local_epochs=2, learning_rate=0.02),
                       initial_params=INITIAL, registry=registry)


def _simulate(compression: Compression | None) -> SimulationResult:
    population = Population(CLIENTS, seed=0, data=_data)
    runner = AppRunner(lambda cid: _app(population.index_of(cid)))
    kwargs = {} if compression is None else {"handler": compressing_handlers(compression)}
    return InProcessDriver(_engine(VirtualRegistry(population)), population, runner,
                           **kwargs).run()  # type: ignore[arg-type]


def test_quantised_uploads_are_decoded_and_counted_in_simulation() -> None:
    dense = _simulate(None)
    eight = _simulate(Compression(kind=Kind.QUANTIZE, bits=8))
    one = _simulate(Compression(kind=Kind.QUANTIZE, bits=1))

    # bytes per client: codes (ceil(n·b/8)) + a float64 [lo, step] range per tensor
    assert [r.metrics[UPLOAD_BYTES] for r in dense.records] == [CLIENTS * DENSE_BYTES] * ROUNDS
    assert eight.records[0].metrics[UPLOAD_BYTES] == CLIENTS * (FEATURES + 1 + 2 * 16)
    assert one.records[0].metrics[UPLOAD_BYTES] == CLIENTS * (5 + 1 + 2 * 16)
    # 8 bits lands close to the dense model, 1 bit further away, but both train
    gap8 = np.abs(eight.params["w"] - dense.params["w"]).max()
    gap1 = np.abs(one.params["w"] - dense.params["w"]).max()
    assert gap8 < 0.02 * np.abs(dense.params["w"]).max() and gap8 < gap1
    assert all(r.status == "ok" for r in (*eight.records, *one.records))


def test_top_k_over_grpc_matches_the_simulation_and_keeps_its_residual(tmp_path: Path) -> None:
    topk = Compression(kind=Kind.TOPK, fraction=0.25)
    sim = _simulate(topk)

    server = CoordinatorServer(_engine(), long_poll_s=0.5, linger_s=0.5)
    server.start()
    clients = [BackgroundClient(_app(i), f"127.0.0.1:{server.port}", client_id=f"sim-{i}",
                                state_dir=tmp_path / f"c{i}", compression=topk)
               for i in range(CLIENTS)]
    try:
        for client in clients:
            client.start()
        assert server.wait(90), "the gRPC run did not finish"
    finally:
        for client in clients:
            client.stop(timeout=10)
        server.stop()

    assert all(c.error is None for c in clients)
    params = server.engine.params or {}
    for name in ("w", "b"):
        np.testing.assert_allclose(params[name], sim.params[name], rtol=1e-5, atol=1e-6)
    # k = 10 of 40 (int64 index + float32 value) and 1 of 1 for b
    per_client = 10 * 12 + 12
    assert [r.metrics[UPLOAD_BYTES] for r in server.engine.records] == [CLIENTS * per_client] * ROUNDS
    assert all((tmp_path / f"c{i}" / "topk_residual").stat().st_size > 0 for i in range(CLIENTS))
    assert np.count_nonzero(sim.params["w"]) > 10  # feedback spreads the mass over rounds


def test_a_malformed_compressed_result_is_refused_and_changes_nothing() -> None:
    from fedcore.engine import EngineError
    from fedcore.protocol.messages import ResultHeader, TaskResult
    from fedcore.protocol.specs import spec_of

    population = Population(CLIENTS, seed=0, data=_data)
    engine = _engine(VirtualRegistry(population))
    engine.tick(0.0)
    task_id = engine.open_task_id
    assert task_id is not None
    cid = engine.open_clients()[0]
    bad = {"w#idx": np.array([5, 3], np.int64), "w#val": np.ones(2, np.float32),
           "b": np.zeros(1, np.float32)}
    header = ResultHeader(client_id=cid, task_id=task_id, num_examples=3, metrics={},
                          spec=spec_of(bad))

    with pytest.raises(EngineError, match="ascend"):
        engine.submit(TaskResult(header=header, tensors=bad), now=1.0)

    assert cid in engine.open_clients()  # it may still send a good result


def test_secure_rounds_record_their_masked_upload_bytes_and_take_a_server_optimizer() -> None:
    from fedcore.engine.config import SecureAggregationConfig
    from fedcore.strategy.server_opt import FedAdam

    def run(secagg: SecureAggregationConfig | None) -> RoundEngine:
        population = Population(CLIENTS, seed=0, data=_data)
        everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
        config = EngineConfig(num_rounds=2, train=everyone, evaluate=None,
                              round_timeout_s=60.0, secagg=secagg)
        engine = RoundEngine(config, FedAdam(inner=FedAvg(local_epochs=2, learning_rate=0.02),
                                             eta=0.1),
                             initial_params=INITIAL, registry=VirtualRegistry(population))
        InProcessDriver(engine, population,
                        AppRunner(lambda cid: _app(population.index_of(cid)))).run()
        return engine

    secure = run(SecureAggregationConfig(max_clients=CLIENTS, clip=10.0))
    plain = run(None)

    assert [r.status for r in secure.records] == ["ok", "ok"]
    # each survivor's masked vector: the weighted update and its weight, 32 bits an element
    assert [r.metrics[UPLOAD_BYTES] for r in secure.records] == [CLIENTS * 4 * (FEATURES + 2)] * 2
    # FedAdam on the securely aggregated mean: the plain run's model, up to quantisation
    assert secure.params is not None and plain.params is not None
    np.testing.assert_allclose(secure.params["w"], plain.params["w"], atol=1e-3)
    assert np.abs(plain.params["w"]).max() > 0.1
