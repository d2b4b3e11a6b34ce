"""`fedcore.sim.simulate.run(config, strategy=...)`: your own strategy replaces the TOML's."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.sim.config import load_simulation_config
from fedcore.sim.simulate import run
from fedcore.strategy import FedAvg

CONFIG = Path(__file__).resolve().parents[3] / "benchmarks" / "configs" / "digits_dirichlet.toml"


@dataclasses.dataclass
class Recording:
    """FedAvg whose client learning rate halves every round, noting every call it gets."""

    base: FedAvg
    asked: list[int] = dataclasses.field(default_factory=list)
    applied: int = 0

    def train_config(self, round_number: int) -> Any:
        self.asked.append(round_number)
        config = self.base.train_config(round_number)
        return dataclasses.replace(config, learning_rate=config.learning_rate / 2 ** round_number)

    def aggregator(self, round_number: int) -> Any:
        return self.base.aggregator(round_number)

    def apply(self, params: Any, result: Any) -> Any:
        self.applied += 1
        return self.base.apply(params, result)


def test_a_custom_strategy_drives_the_simulation(tmp_path: Path) -> None:
    overrides = {"rounds.num_rounds": 2, "simulation.clients": 40, "rounds.clients_per_round": 5,
                 "rounds.min_available": 5, "rounds.min_results": 5, "rounds.eval_fraction": 0.1}
    config = load_simulation_config(CONFIG, overrides)
    strategy = Recording(FedAvg(local_epochs=1, batch_size=8, learning_rate=0.2))
    frozen = Recording(FedAvg(local_epochs=1, batch_size=8, learning_rate=1e-12))

    result = run(config, strategy=strategy, write=False)
    unchanged = run(config, strategy=frozen, write=False)
    configured = run(config, write=False)

    assert 1 in strategy.asked and 2 in strategy.asked and strategy.applied == 2
    assert [r.status for r in result.records] == ["ok", "ok"]
    # the strategy's learning rates, not the TOML's 0.2 / 5 epochs, trained the model
    assert not all(np.array_equal(result.params[k], configured.params[k]) for k in result.params)
    moved = max(float(np.abs(result.params[k] - unchanged.params[k]).max()) for k in result.params)
    assert moved > 0
