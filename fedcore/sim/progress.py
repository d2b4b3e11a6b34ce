"""`fedcore simulate`: a simulation run with a live table of rounds and a summary (rich)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedcore.engine import RoundRecord
from fedcore.sim.config import SimulationConfig
from fedcore.sim.driver import SimulationResult

HEADER = (
    f"{'round':>5} {'results':>9} {'train loss':>11} {'test loss':>10} {'accuracy':>9} "
    f"{'simulated':>10}"
)


def run_with_progress(config: SimulationConfig, console: Console | None = None) -> SimulationResult:
    """`fedcore.sim.simulate.run(config)`, printing each round as it completes."""
    from fedcore.sim import simulate as simulation  # late: keeps `fedcore --help` fast

    console = console or Console()
    sim = config.simulation
    console.print(
        f"simulating {sim.clients} clients ({config.data.dataset.value}, {sim.model.value}, "
        f"{config.strategy.name.value}) with the {sim.backend.value} backend on {sim.device}"
    )
    progress = Progress(
        TextColumn("[bold]simulation"), BarColumn(), MofNCompleteColumn(), TextColumn("rounds"),
        TimeElapsedColumn(), console=console,
    )
    steps = config.rounds.num_rounds if config.buffered is None else config.buffered.num_updates
    bar = progress.add_task("rounds", total=steps)

    def on_round(record: RoundRecord) -> None:
        progress.console.print(round_row(record))
        progress.advance(bar)

    begin = time.perf_counter()
    with progress:
        progress.console.print(HEADER)
        result = simulation.run(config, on_round=on_round)
    console.print(_summary(result, time.perf_counter() - begin))
    console.print(files_line(Path(sim.out_dir)), soft_wrap=True)  # whole paths, never cut
    return result


def round_row(r: RoundRecord) -> str:
    """One line of the live table (simulated seconds, not wall time)."""
    return (
        f"{r.round:>5} {r.results_received:>4}/{r.clients_selected:<4} "
        f"{_fmt(r.train_loss, '.4f'):>11} {_fmt(r.loss, '.4f'):>10} "
        f"{_fmt(r.accuracy, '.3f'):>9} {r.duration_s:>9.1f}s"
        + (f"  [yellow]{r.reason}[/]" if r.reason else "")
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def files_line(out: Path) -> str:
    """Where the run's files are (printed below the summary, where no column can cut it)."""
    return f"wrote {out / 'history.json'}, {out / 'history.csv'} and {out / 'training.png'}"


def _summary(result: SimulationResult, wall_s: float) -> Table:
    accuracies = [r.accuracy for r in result.records if r.accuracy is not None]
    table = Table(title="fedcore simulation")
    for column in ("rounds", "final accuracy", "best accuracy", "simulated", "wall"):
        table.add_column(column)
    table.add_row(
        str(len(result.records)),
        _fmt(accuracies[-1] if accuracies else None, ".3f"),
        _fmt(max(accuracies) if accuracies else None, ".3f"),
        f"{result.simulated_s:.0f}s",
        f"{wall_s:.1f}s",
    )
    return table
