"""`fedcore demo`: a coordinator in this process, N client processes on loopback, live progress."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedcore.config import (
    CoordinatorConfig,
    LocalDPSection,
    PrivacyConfig,
    RoundsConfig,
    StrategyConfig,
    plan_run,
)
from fedcore.demo.digits_app import initial_params
from fedcore.engine import RoundRecord
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.plan import build_run
from fedcore.report.history import HistoryWriter
from fedcore.report.plot import plot_history
from fedcore.storage.identity_files import enrol, load_roster
from fedcore.transport.grpc.server import CoordinatorServer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """Settings of the local demo."""

    clients: int = 8
    rounds: int = 20
    out_dir: Path = Path("runs/demo")
    seed: int = 0
    alpha: float = 0.5
    device: str = "cpu"
    local_epochs: int = 2
    learning_rate: float = 0.05
    batch_size: int = 16
    timeout_s: float = 600.0
    dp_epsilon: float = 0.0
    dp_max_grad_norm: float = 1.0
    secagg: bool = False
    signed: bool = False
    port: int = 0  # the coordinator's port on 127.0.0.1; 0: any free one

    @property
    def identities(self) -> Path:
        """Where signed demos keep the clients' identity keys and the roster."""
        return Path(self.out_dir) / "identities"

    def sections(self) -> CoordinatorConfig:
        """The run as a coordinator file would describe it: every client in every round,
        FedAvg, local DP-SGD spending `dp_epsilon` over the rounds when > 0, and secure
        aggregation over all demo clients when asked for (signed: with the roster that
        `enrol_clients` writes)."""
        return CoordinatorConfig(
            rounds=RoundsConfig(num_rounds=self.rounds, fraction=1.0, min_results=self.clients,
                                min_available=self.clients, eval_fraction=1.0, seed=self.seed),
            strategy=StrategyConfig(local_epochs=self.local_epochs, batch_size=self.batch_size,
                                    learning_rate=self.learning_rate),
            privacy=PrivacyConfig(local=LocalDPSection(
                target_epsilon=self.dp_epsilon, max_grad_norm=self.dp_max_grad_norm,
            ) if self.dp_epsilon > 0 else None),
            secagg=SecureAggregationConfig(
                max_clients=self.clients, clip=2.0, weight_cap=500.0,
                roster=load_roster(self.identities / "roster.json") if self.signed else None,
            ) if self.secagg or self.signed else None,
        )


def client_command(cfg: DemoConfig, address: str, partition: int) -> list[str]:
    """The command line of one demo client process."""
    return [
        sys.executable, "-m", "fedcore.cli", "client",
        "--server", address,
        "--app", "digits",
        "--partition", str(partition),
        "--num-partitions", str(cfg.clients),
        "--alpha", str(cfg.alpha),
        "--seed", str(cfg.seed),
        "--device", cfg.device,
        "--client-id", f"demo-client-{partition}",
        "--state-dir", str(Path(cfg.out_dir) / "state" / f"client-{partition}"),
        *(["--secagg-key", str(cfg.identities / f"client-{partition}.pem"),
           "--secagg-roster", str(cfg.identities / "roster.json")] if cfg.signed else []),
    ]


def enrol_clients(cfg: DemoConfig) -> None:
    """A fresh identity key per demo client and a roster of them (what an operator does with
    `fedcore identity`)."""
    shutil.rmtree(cfg.identities, ignore_errors=True)
    cfg.identities.mkdir(parents=True, mode=0o700)
    for i in range(cfg.clients):
        enrol(f"demo-client-{i}", cfg.identities / f"client-{i}.pem", cfg.identities / "roster.json")


def run_demo(cfg: DemoConfig, console: Console | None = None) -> list[RoundRecord]:
    """Run the demo to completion; returns the round records (also written to `out_dir`)."""
    console = console or Console()
    out = Path(cfg.out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "state", ignore_errors=True)  # a new run starts with nothing spent
    if cfg.signed:
        enrol_clients(cfg)
    history = HistoryWriter(out)
    engine = build_run(plan_run(cfg.sections()), initial_params=initial_params(cfg.seed))
    records: list[RoundRecord] = []
    progress = Progress(
        TextColumn("[bold]federated training"), BarColumn(), MofNCompleteColumn(),
        TextColumn("rounds"), TimeElapsedColumn(), console=console,
    )
    bar = progress.add_task("rounds", total=cfg.rounds)

    def on_round(record: RoundRecord) -> None:
        records.append(record)
        history.append(record)
        progress.console.print(_row(record, dp=cfg.dp_epsilon > 0))
        progress.advance(bar)

    server = CoordinatorServer(engine, address=f"127.0.0.1:{cfg.port}", on_round=on_round,
                               long_poll_s=2.0, linger_s=2.0)
    port = server.start()
    address = f"127.0.0.1:{port}"
    console.print(
        f"coordinator on {address}; starting {cfg.clients} client processes "
        f"(digits, Dirichlet alpha={cfg.alpha}"
        + (", signed secure aggregation" if cfg.signed
           else ", secure aggregation" if cfg.secagg else "")
        + (f", local DP-SGD with epsilon <= {cfg.dp_epsilon:g}" if cfg.dp_epsilon else "")
        + f"); logs in {out / 'logs'}"
    )
    procs = _start_clients(cfg, address, out / "logs")
    try:
        with progress:
            progress.console.print(
                f"{'round':>5} {'clients':>8} {'train loss':>11} {'test loss':>10} "
                f"{'accuracy':>9} {'time':>7}" + (f" {'epsilon':>8}" if cfg.dp_epsilon > 0 else "")
            )
            _wait(server, procs, cfg.timeout_s)
    finally:
        server.stop()
        _stop_clients(procs)
    if not records:
        raise RuntimeError(f"no round completed; see the client logs in {out / 'logs'}")
    plot_path = plot_history(history.rows, out / "training.png", title="fedcore demo: digits")
    _summary(console, records, history, plot_path)
    return records


def _start_clients(cfg: DemoConfig, address: str, logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(cfg.clients):
        log_file = open(logs / f"client-{i}.log", "wb")  # noqa: SIM115 - handed to the process
        procs.append(
            subprocess.Popen(client_command(cfg, address, i), stdout=log_file, stderr=log_file)
        )
        log_file.close()
    return procs


def _wait(server: CoordinatorServer, procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.wait(0.5):
        if all(p.poll() is not None for p in procs):
            # clients that heard "done" may exit while the server still lingers for the rest
            if server.wait(10.0):
                return
            raise RuntimeError("every client process exited before the run finished")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo did not finish within {timeout_s:.0f}s")


def _stop_clients(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(r: RoundRecord, *, dp: bool) -> str:
    epsilon = f" {_fmt(r.metrics.get('epsilon'), '.3f'):>8}" if dp else ""
    return (
        f"{r.round:>5} {r.results_received:>4}/{r.clients_selected:<3} "
        f"{_fmt(r.train_loss, '.4f'):>11} {_fmt(r.loss, '.4f'):>10} "
        f"{_fmt(r.accuracy, '.3f'):>9} {r.duration_s:>6.2f}s" + epsilon
        + (f"  [yellow]{r.reason}[/]" if r.reason else "")
    )


def _summary(
    console: Console, records: list[RoundRecord], history: HistoryWriter, plot: Path
) -> None:
    table = Table(title="fedcore demo")
    table.add_column("rounds")
    table.add_column("final accuracy")
    table.add_column("best accuracy")
    table.add_column("files")
    accuracies = [r.accuracy for r in records if r.accuracy is not None]
    table.add_row(
        str(len(records)),
        _fmt(accuracies[-1] if accuracies else None, ".3f"),
        _fmt(max(accuracies) if accuracies else None, ".3f"),
        f"{history.json_path}\n{history.csv_path}\n{plot}",
    )
    console.print(table)
