from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "simulation.py"


def test_simulation_benchmark_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("simulation_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    module.main(["--clients", "6", "--sequential-clients", "3"])

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["clients"] == 6 and report["sequential_scaled_from"] == 3
    assert report["vectorised_round_s"] > 0 and report["sequential_round_s"] > 0
    assert report["max_update_diff"] < 1e-5
