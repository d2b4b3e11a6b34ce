"""`fedcore`: run a coordinator, run a client, or run the local demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (for log collectors)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger for a CLI process (the library itself never does this)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="fedcore", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="coordinator + N client processes on loopback (digits)")
    demo.add_argument("--clients", type=int, default=8, help="number of client processes")
    demo.add_argument("--rounds", type=int, default=20, help="number of training rounds")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew alpha")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or auto (clients' device)")

    server = sub.add_parser("server", help="run a coordinator")
    server.add_argument("--config", type=Path, help="TOML file (see server/coordinator.example.toml)")
    server.add_argument("--address", help="host:port to listen on [server.address]")
    server.add_argument("--out", help="directory for history files [server.out_dir]")
    server.add_argument("--rounds", type=int, help="number of rounds [rounds.num_rounds]")
    server.add_argument("--clients-per-round", type=int, help="[rounds.clients_per_round]")
    server.add_argument("--min-clients", type=int, help="clients needed to start [rounds.min_available]")
    server.add_argument("--min-results", type=int, help="results a round needs [rounds.min_results]")
    server.add_argument("--round-timeout", type=float, help="seconds [rounds.round_timeout_s]")
    server.add_argument("--initial-model", help=".npz of initial parameters [server.initial_model]")
    server.add_argument("--auth-token-file", type=Path, help="file holding the clients' shared token")

    client = sub.add_parser("client", help="run a bundled example client app")
    client.add_argument("--server", required=True, help="coordinator host:port")
    client.add_argument("--app", default="digits", choices=["digits"], help="bundled app")
    client.add_argument("--partition", type=int, required=True, help="this client's data slice")
    client.add_argument("--num-partitions", type=int, required=True)
    client.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew alpha")
    client.add_argument("--seed", type=int, default=0)
    client.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    client.add_argument("--client-id", help="stable id (default: random)")
    client.add_argument("--auth-token-file", type=Path, help="file holding the shared token")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fedcore` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        match args.command:
            case "demo":
                return _demo(args)
            case "server":
                return _server(args)
            case "client":
                return _client(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError) as err:
        print(f"fedcore {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 2


def _demo(args: argparse.Namespace) -> int:
    if args.clients < 2 or args.rounds < 1:
        raise ValueError("--clients must be >= 2 and --rounds >= 1")
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    from fedcore.demo.run import DemoConfig, run_demo

    run_demo(
        DemoConfig(
            clients=args.clients, rounds=args.rounds, out_dir=args.out, seed=args.seed,
            alpha=args.alpha, device=args.device,
        )
    )
    return 0


def _server(args: argparse.Namespace) -> int:
    from fedcore.config import load_config
    from fedcore.engine import RoundEngine
    from fedcore.history import HistoryWriter
    from fedcore.plot import plot_history
    from fedcore.transport.grpc.server import CoordinatorServer

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "server.address": args.address,
            "server.out_dir": args.out,
            "server.initial_model": args.initial_model,
            "rounds.num_rounds": args.rounds,
            "rounds.clients_per_round": args.clients_per_round,
            "rounds.min_available": args.min_clients,
            "rounds.min_results": args.min_results,
            "rounds.round_timeout_s": args.round_timeout,
        }.items()
        if value is not None
    }
    config = load_config(args.config, overrides)
    initial = load_npz(Path(config.server.initial_model)) if config.server.initial_model else None
    engine = RoundEngine(config.engine_config(), config.strategy_obj(), initial_params=initial)
    history = HistoryWriter(Path(config.server.out_dir))
    server = CoordinatorServer(
        engine,
        address=config.server.address,
        on_round=history.append,
        long_poll_s=config.server.long_poll_s,
        auth_token=_read_token(args.auth_token_file),
    )
    server.start()
    logging.getLogger("fedcore").info(
        "coordinator serving on %s, writing %s", config.server.address, history.json_path
    )
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    if history.rows:
        plot_history(history.rows, history.out_dir / "training.png")
    return 0


def _client(args: argparse.Namespace) -> int:
    import torch

    from fedcore.client import run_client
    from fedcore.demo.digits_app import DigitsSetup, make_app

    torch.set_num_threads(1)  # a small model: threads would only contend with other clients

    app = make_app(
        DigitsSetup(num_clients=args.num_partitions, alpha=args.alpha, seed=args.seed),
        args.partition,
        device=args.device,
    )
    stop = threading.Event()
    summary = run_client(
        app, args.server, client_id=args.client_id, stop=stop,
        auth_token=_read_token(args.auth_token_file),
    )
    logging.getLogger("fedcore").info(
        "client %s done: %d tasks, %d refused, %d reconnects",
        summary.client_id, summary.tasks_completed, summary.tasks_refused, summary.reconnects,
    )
    return 0


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Parameters from an .npz file (never unpickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _read_token(path: Path | None) -> str:
    return path.read_text().strip() if path else ""


if __name__ == "__main__":
    sys.exit(main())
