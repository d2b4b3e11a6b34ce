"""`fedcore simulate` names its output files in full, even on a narrow terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from fedcore.sim.progress import files_line


def test_the_files_line_is_never_cut(tmp_path: Path) -> None:
    out = tmp_path / "a-rather-long-directory-name" / "sim-digits-dirichlet"
    console = Console(width=40, record=True, color_system=None)

    console.print(files_line(out), soft_wrap=True)

    text = console.export_text().rstrip("\n")
    assert "\n" not in text  # one line: a terminal wraps it, nothing truncates it
    for name in ("history.json", "history.csv", "training.png"):
        assert str(out / name) in text
