from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.sim.config import load_simulation_config

CONFIGS = Path(__file__).resolve().parents[3] / "benchmarks" / "configs"

TINY = """
[simulation]
clients = 8
model = "logreg"

[data]
dataset = "synthetic"
samples_per_client = 20

[rounds]
num_rounds = 5
clients_per_round = 4
eval_fraction = 0.5

[strategy]
batch_size = 5
learning_rate = 0.05
"""


def test_simulate_runs_a_config_and_writes_the_history(tmp_path: Path) -> None:
    # arrange
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "out"

    # act
    code = main(["simulate", "--config", str(config), "--rounds", "2", "--clients", "6",
                 "--backend", "sequential", "--out", str(out)])

    # assert
    assert code == 0
    rounds = json.loads((out / "history.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["results_received"] == 4 and r["accuracy"] is not None for r in rounds)
    assert len((out / "history.csv").read_text().splitlines()) == 3
    assert (out / "training.png").read_bytes().startswith(b"\x89PNG")


def test_simulate_names_a_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[simulation]\nbackend = "quantum"\n')

    code = main(["simulate", "--config", str(config), "--out", str(tmp_path / "out")])

    assert code == 2
    assert "simulation.backend must be one of" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_simulate_refuses_a_bad_backend_flag_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["simulate", "--backend", "quantum", "--out", str(tmp_path)])

    assert exited.value.code == 2
    assert "--backend" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["synthetic_fedavg.toml", "digits_dirichlet.toml"])
def test_example_configs_load(name: str) -> None:
    config = load_simulation_config(CONFIGS / name)

    assert config.simulation.clients > 0
