"""A simulation is a function of its configuration: the same seed gives the same run.

Researchers rerun a configuration to check a result; dropouts, stragglers, over-selection,
selection and local training are all drawn from the seed, and a process pool trains exactly
as the process itself does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.sim import simulate as simulation
from fedcore.sim.config import load_simulation_config

BASE: dict[str, Any] = {
    "simulation.clients": 200,
    "data.dataset": "digits",
    "data.partition": "dirichlet",
    "data.dirichlet_alpha": 0.3,
    "rounds.num_rounds": 3,
    "rounds.clients_per_round": 12,
    "rounds.min_available": 12,
    "rounds.over_selection": 0.25,
    "rounds.eval_fraction": 0.05,
    "strategy.learning_rate": 0.05,
    "strategy.batch_size": 8,
    "strategy.local_epochs": 2,
    "timing.dropout": 0.1,
    "stragglers.fraction": 0.3,
}


def _run(tmp_path: Path, **overrides: Any) -> simulation.SimulationResult:
    config = load_simulation_config(None, {**BASE, "simulation.out_dir": str(tmp_path),
                                           **overrides})
    return simulation.run(config, write=False)


def _history(result: simulation.SimulationResult) -> list[dict[str, Any]]:
    return [asdict(r) for r in result.records]


def test_the_same_seed_gives_the_same_history_and_model(tmp_path: Path) -> None:
    first, second = _run(tmp_path), _run(tmp_path)

    assert _history(first) == _history(second)
    assert first.simulated_s == second.simulated_s
    for name, value in first.params.items():
        np.testing.assert_array_equal(second.params[name], value)


def test_another_seed_gives_another_run(tmp_path: Path) -> None:
    first, other = _run(tmp_path), _run(tmp_path, **{"simulation.seed": 1})

    assert any(not np.array_equal(other.params[n], v) for n, v in first.params.items())


def test_a_process_pool_reproduces_the_in_process_run(tmp_path: Path) -> None:
    alone = _run(tmp_path)
    pooled = _run(tmp_path, **{"simulation.backend": "processes", "simulation.workers": 2})

    assert [(r.status, r.clients_selected, r.results_received) for r in pooled.records] == [
        (r.status, r.clients_selected, r.results_received) for r in alone.records
    ]
    for name, value in alone.params.items():
        np.testing.assert_allclose(pooled.params[name], value, rtol=1e-5, atol=1e-6)
