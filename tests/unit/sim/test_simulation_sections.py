"""The coordinator's [secagg] and [privacy] sections ([privacy.local], [privacy.user]) work in
simulations too."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcore.config import ConfigError
from fedcore.sim import simulate as simulation
from fedcore.sim.config import load_simulation_config

BASE = {
    "simulation.clients": 60,
    "data.samples_per_client": 30,
    "rounds.num_rounds": 2,
    "rounds.clients_per_round": 10,
    "rounds.min_available": 10,
    "rounds.eval_fraction": 0.0,
    "strategy.learning_rate": 0.05,
    "strategy.batch_size": 10,
}


def test_secure_aggregation_section_runs_secure_rounds(tmp_path: Path) -> None:
    config = load_simulation_config(None, {
        **BASE, "simulation.out_dir": str(tmp_path), "secagg.enabled": True,
        "secagg.mode": "secagg+", "secagg.clip": 4.0, "secagg.weight_cap": 24.0,
    })

    result = simulation.run(config, write=False)

    assert [r.status for r in result.records] == ["ok", "ok"]
    assert all(r.metrics.get("secagg_survivors") == 10.0 for r in result.records)


def test_privacy_section_trains_with_local_dp_and_reports_epsilon(tmp_path: Path) -> None:
    config = load_simulation_config(None, {
        **BASE, "simulation.out_dir": str(tmp_path), "privacy.local.noise_multiplier": 1.0,
    })

    result = simulation.run(config, write=False)

    spent = [r.metrics["epsilon"] for r in result.records]
    assert 0 < spent[0] < spent[1]


def test_user_dp_section_reports_user_level_epsilon(tmp_path: Path) -> None:
    config = load_simulation_config(None, {
        **BASE, "simulation.out_dir": str(tmp_path), "privacy.user.noise_multiplier": 1.0,
        "privacy.user.clip_norm": 1.0, "privacy.user.population": 60,
    })

    result = simulation.run(config, write=False)

    spent = [r.metrics["user_epsilon"] for r in result.records]
    assert 0 < spent[0] < spent[1]


def test_a_roster_is_refused_in_simulation_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text('[secagg]\nenabled = true\nroster = "roster.json"\n')
    with pytest.raises(ConfigError, match=r"\[secagg\] roster: .*simulated clients run unsigned"):
        load_simulation_config(path)
