"""The history plot: a panel per quantity the rounds record (accuracy, loss, ε, bytes uploaded)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from fedcore.report.plot import plot_history

DPI, PANEL_INCHES = 110, 4.5


def _panels(path: Path) -> int:
    width = matplotlib.image.imread(path).shape[1]
    return round(width / (DPI * PANEL_INCHES))


def test_bytes_uploaded_get_a_panel_when_rounds_record_them(tmp_path: Path) -> None:
    plain = [{"round": r, "accuracy": 0.5 + r / 10, "loss": 1.0 / r} for r in (1, 2, 3)]
    uploading = [dict(row, upload_bytes=4096.0 * r) for r, row in enumerate(plain, 1)]

    assert _panels(plot_history(plain, tmp_path / "plain.png")) == 2
    assert _panels(plot_history(uploading, tmp_path / "bytes.png")) == 3
    with_epsilon = [dict(row, epsilon=0.1 * r) for r, row in enumerate(uploading, 1)]
    assert _panels(plot_history(with_epsilon, tmp_path / "all.png")) == 4
