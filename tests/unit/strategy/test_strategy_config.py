"""[strategy] name, [strategy.optimizer] and [strategy.robust]: what they build, what they refuse,
and a simulated run of a server optimizer from its TOML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.config import ConfigError, load_config
from fedcore.strategy import FedAvg
from fedcore.strategy.dp_fedavg import DPFedAvg
from fedcore.strategy.robust import Defence, RobustAggregation
from fedcore.strategy.server_opt import Rule, ServerOptimizer


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path).run.strategy


@pytest.mark.parametrize("rule", list(Rule))
def test_each_optimizer_name_builds_it_with_the_papers_defaults(tmp_path: Path,
                                                                rule: Rule) -> None:
    strategy = load(tmp_path, f'[strategy]\nname = "{rule.value}"\nlearning_rate = 0.1\n')

    assert isinstance(strategy, ServerOptimizer) and strategy.rule is rule
    assert isinstance(strategy.inner, FedAvg) and strategy.inner.learning_rate == 0.1
    if rule is Rule.MOMENTUM:
        assert (strategy.beta1, strategy.eta) == (0.9, 1.0)  # momentum, strategy.server_lr
    else:
        assert (strategy.eta, strategy.beta1, strategy.beta2, strategy.tau) == (
            1e-2, 0.9, 0.99, 1e-3)


def test_hyper_parameters_and_a_robust_aggregator_compose(tmp_path: Path) -> None:
    strategy = load(tmp_path, '[rounds]\nmin_results = 5\nmin_available = 5\n'
                              '[strategy]\nname = "fedyogi"\n[strategy.optimizer]\neta = 0.3\n'
                              'tau = 0.01\n[strategy.robust]\naggregator = "krum"\nbyzantine = 1\n')

    assert isinstance(strategy, ServerOptimizer) and (strategy.eta, strategy.tau) == (0.3, 0.01)
    assert isinstance(strategy.inner, RobustAggregation)
    assert (strategy.inner.defence, strategy.inner.byzantine) == (Defence.KRUM, 1)


def test_a_server_optimizer_steps_on_dp_fedavgs_aggregate(tmp_path: Path) -> None:
    strategy = load(tmp_path, '[rounds]\nclients_per_round = 10\n[strategy]\nname = "fedadam"\n'
                              '[privacy.user]\nnoise_multiplier = 1.0\npopulation = 100\n')

    assert isinstance(strategy, ServerOptimizer) and isinstance(strategy.inner, DPFedAvg)


@pytest.mark.parametrize(("text", "match"), [
    ('[strategy.robust]\naggregator = "median"\n[secagg]\nenabled = true\n',
     "must see every client's update"),
    ('[strategy.robust]\naggregator = "norm_bound"\n[secagg]\nenabled = true\n',
     "secagg.clip"),
    (('[rounds]\nclients_per_round = 10\n[strategy.robust]\naggregator = "trimmed_mean"\n'
     '[privacy.user]\nnoise_multiplier = 1.0\npopulation = 100\n'), r"\[privacy.user\]"),
    ('[strategy.robust]\naggregator = "trimmed_mean"\ntrim_fraction = 0.7\n',
     r"\[strategy.robust\].*trim_fraction"),
    ('[strategy]\nname = "fedadam"\n[strategy.optimizer]\nbeta_2 = 1.0\n',
     r"\[strategy.optimizer\].*beta2"),
    ('[strategy.robust]\naggregator = "bulyan"\n', "strategy.robust.aggregator must be one of"),
    ('[rounds]\nmin_results = 6\nmin_available = 6\n[strategy.robust]\naggregator = "krum"\nbyzantine = 2\n',
     r"needs at least 7 updates per round"),
    ('[strategy.optimizer]\nlr = 1.0\n', "strategy.optimizer.lr"),
])
def test_bad_or_impossible_settings_fail_at_start(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, text)


def test_server_optimizers_under_secure_aggregation_are_allowed(tmp_path: Path) -> None:
    strategy = load(tmp_path, '[strategy]\nname = "fedavgm"\n[secagg]\nenabled = true\n')

    assert isinstance(strategy, ServerOptimizer)


TINY = """
[simulation]
clients = 6
model = "logreg"
backend = "sequential"

[data]
dataset = "synthetic"
samples_per_client = 20

[rounds]
num_rounds = 3
clients_per_round = 4
eval_fraction = 0.5

[strategy]
batch_size = 5
learning_rate = 0.05
"""


def _simulate(tmp_path: Path, name: str, extra: str = "") -> list[dict[str, object]]:
    config = tmp_path / f"{name}.toml"
    config.write_text(TINY + f'name = "{name}"\n' + extra)
    out = tmp_path / name
    assert main(["simulate", "--config", str(config), "--out", str(out)]) == 0
    rounds: list[dict[str, object]] = json.loads((out / "history.json").read_text())["rounds"]
    return rounds


def test_fedadam_and_a_median_run_in_simulation_from_their_toml(tmp_path: Path) -> None:
    adam = _simulate(tmp_path, "fedadam", '[strategy.optimizer]\neta = 0.05\n'
                                          '[strategy.robust]\naggregator = "median"\n')
    plain = _simulate(tmp_path, "fedavg")

    assert [r["status"] for r in adam] == ["ok"] * 3
    assert all(r["accuracy"] is not None for r in adam)
    assert [r["loss"] for r in adam] != [r["loss"] for r in plain]


def test_the_coordinator_resumes_a_server_optimizer_with_its_moments(tmp_path: Path) -> None:
    import numpy as np

    from fedcore.aggregate.base import AggregateResult
    from fedcore.coordinator.process import build_engine
    from fedcore.engine.snapshot import EngineSnapshot
    from fedcore.storage.checkpoints import save_checkpoint
    from fedcore.strategy.server_opt import FedYogi

    out = tmp_path / "run"
    out.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nout_dir = "{out}"\n[strategy]\nname = "fedyogi"\n'
                      '[strategy.optimizer]\neta = 0.5\n')
    before = FedYogi(eta=0.5)
    params = {"w": np.zeros(3, np.float32)}
    for delta in ([1.0, -2.0, 0.5], [0.5, 0.5, 0.5]):
        params = before.apply(params, AggregateResult(
            update={"w": np.array(delta, np.float32)}, count=1, total_weight=1.0))
    save_checkpoint(out, EngineSnapshot(round=2, task_seq=2, params=params,
                                        strategy_state=before.state_arrays()))

    engine = build_engine(load_config(config), resume=True)

    assert isinstance(engine.strategy, ServerOptimizer)
    restored = engine.strategy.state_arrays()
    assert restored.keys() == before.state_arrays().keys() == {"server_opt.m.w",
                                                              "server_opt.v.w"}
    for key, value in before.state_arrays().items():
        np.testing.assert_array_equal(restored[key], value)
    step = AggregateResult(update={"w": np.ones(3, np.float32)}, count=1, total_weight=1.0)
    np.testing.assert_array_equal(engine.strategy.apply(params, step)["w"],
                                  before.apply(params, step)["w"])


def test_a_simulation_compresses_uploads_from_its_toml(tmp_path: Path) -> None:
    dense = _simulate(tmp_path, "fedavg")
    one_bit = _simulate(tmp_path, "fedadagrad",
                        '[compression]\nenabled = true\nkind = "quantize"\nbits = 1\n')

    # logreg on Synthetic(1,1): 60 x 10 weights + 10 biases, 4 clients per round
    assert [r["upload_bytes"] for r in dense] == [4 * 4 * (600 + 10)] * 3
    assert [r["upload_bytes"] for r in one_bit] == [4 * (75 + 16 + 2 + 16)] * 3
    assert all(r["status"] == "ok" for r in one_bit)


def test_top_k_compression_with_secure_aggregation_is_refused() -> None:
    from fedcore.sim.config import load_simulation_config

    with pytest.raises(ConfigError, match=r"kind = 'topk' cannot run under \[secagg\]"):
        load_simulation_config(None, {"compression.enabled": True, "compression.kind": "topk",
                                      "secagg.enabled": True})
