"""The McMahan et al. reproduction reports rounds-to-99% from its per-round log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import reproduce_fedavg_mnist


def _write_log(path: Path, accuracies: dict[int, float]) -> None:
    rows = [{"round": r, "test_accuracy": a, "test_loss": 0.1, "train_loss": 0.01,
             "wall_s": 10.0 * r} for r, a in accuracies.items()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_stopped_run_is_summarised_from_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, plot = tmp_path / "rounds.jsonl", tmp_path / "curve.png"
    _write_log(log, {5: 0.9, 10: 0.9899, 15: 0.9901, 20: 0.9880})
    _write_log(baseline := tmp_path / "fedsgd.jsonl", {10: 0.5, 300: 0.97})

    report = reproduce_fedavg_mnist.main(["--from-log", "--log", str(log), "--plot", str(plot),
                                          "--compare", str(baseline)])

    assert report["rounds_to_99"] == 15  # the first evaluated round at or above 99.00%
    assert report["best_test_accuracy"] == 0.9901 and report["final_test_accuracy"] == 0.988
    assert report["rounds"] == 20 and report["seconds_per_round"] == 10.0
    assert report["paper_rounds_to_99"] == 229 and report["from_log"] == str(log)
    assert plot.stat().st_size > 0
    assert json.loads(capsys.readouterr().out) == report


def test_a_run_that_never_reaches_the_target_says_so(tmp_path: Path) -> None:
    log = tmp_path / "rounds.jsonl"
    _write_log(log, {10: 0.95, 20: 0.97})

    report = reproduce_fedavg_mnist.main(
        ["--from-log", "--algorithm", "fedsgd", "--log", str(log), "--plot", str(tmp_path / "p.png")]
    )

    assert report["rounds_to_99"] is None and report["paper_rounds_to_99"] == 483
