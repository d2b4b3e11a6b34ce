"""`fedcore`: run a coordinator, run a client, or run the local demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
    demo.add_argument("--dp", action="store_true", help="local DP-SGD on every client (Opacus)")
    demo.add_argument("--secagg", action="store_true",
                      help="secure aggregation: the coordinator only sees the sum of updates")
    demo.add_argument("--signed", action="store_true",
                      help="signed secure aggregation: enrol the clients (fedcore identity) and "
                      "check each other's keys against the roster; implies --secagg")
    demo.add_argument("--epsilon", type=float, default=8.0,
                      help="with --dp: each client's epsilon budget over the run (delta 1e-5)")

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
    server.add_argument("--auth-token-file", help="file holding the clients' shared token "
                        "[server.auth_token_file]")
    server.add_argument("--tls-cert", help="PEM certificate: turns TLS on [tls.cert]")
    server.add_argument("--tls-key", help="PEM private key of --tls-cert [tls.key]")
    server.add_argument("--tls-client-ca", help="PEM CA: require client certs (mTLS) [tls.client_ca]")
    server.add_argument("--metrics-port", type=int, help="Prometheus port, 0: off [server.metrics_port]")
    server.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    server.add_argument("--progress", action="store_true", help="show a progress bar of rounds")

    client = sub.add_parser("client", help="run a bundled example client app")
    client.add_argument("--server", required=True, help="coordinator host:port")
    client.add_argument("--app", default="digits", choices=["digits"], help="bundled app")
    client.add_argument("--partition", type=_partition, required=True,
                        help="this client's data slice: an index, or auto (claim a free one)")
    client.add_argument("--partition-dir", type=Path, default=Path("/tmp/fedcore-partitions"),
                        help="directory shared by the clients for --partition auto")
    client.add_argument("--num-partitions", type=int, required=True)
    client.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew alpha")
    client.add_argument("--seed", type=int, default=0)
    client.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    client.add_argument("--client-id", help="stable id (default: random)")
    client.add_argument("--state-dir", type=Path,
                        help="directory keeping this client's state (e.g. privacy spent)")
    client.add_argument("--auth-token-file", type=Path, help="file holding the shared token")
    _tls_client_args(client)
    _secagg_identity_args(client)
    _privacy_floor_args(client)

    identity = sub.add_parser(
        "identity", help="enrol a client for signed secure aggregation: its key and the roster")
    identity.add_argument("--client-id", required=True, help="the client's stable id")
    identity.add_argument("--key", type=Path, required=True,
                          help="the client's identity key (PEM, 0600); created if missing")
    identity.add_argument("--roster", type=Path, required=True,
                          help="the roster (JSON) to add the client's public key to; created "
                          "if missing. Give a copy to the coordinator and to every client")

    certs = sub.add_parser("certs", help="generate a demo CA, server and client certificates")
    certs.add_argument("--out", type=Path, required=True, help="directory for the PEM files")
    certs.add_argument("--clients", type=int, default=3, help="client certificates to issue")
    certs.add_argument("--hosts", nargs="*", default=[], help="extra server names and IPs (SANs)")
    certs.add_argument("--token", action="store_true", help="also write a random shared token")
    certs.add_argument("--force", action="store_true", help="replace an existing CA")

    health = sub.add_parser("health", help="ask a coordinator's gRPC health service; exit 0 if serving")
    health.add_argument("--server", required=True, help="coordinator host:port")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds")
    _tls_client_args(health)
    simulate = sub.add_parser("simulate", help="simulate a federation in this process (TOML config)")
    simulate.add_argument("--config", type=Path, help="TOML file (see benchmarks/configs/)")
    simulate.add_argument("--rounds", type=int, help="[rounds.num_rounds]")
    simulate.add_argument("--clients", type=int, help="registered clients [simulation.clients]")
    simulate.add_argument("--backend", help="vectorised, sequential, ... [simulation.backend]")
    simulate.add_argument("--device", help="cpu or cuda [simulation.device]")
    simulate.add_argument("--seed", type=int, help="[simulation.seed]")
    simulate.add_argument("--out", help="directory for history files [simulation.out_dir]")
    return parser


def _tls_client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", help="PEM CA that signed the coordinator's certificate")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")


def _secagg_identity_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secagg-key", type=Path, help="identity key from `fedcore identity`: "
                        "take part in signed secure-aggregation rounds only (needs --client-id)")
    parser.add_argument("--secagg-roster", type=Path,
                        help="the operator's roster; required with --secagg-key")


def _privacy_floor_args(parser: argparse.ArgumentParser) -> None:
    from fedcore.client.floor import (
        DEFAULT_MAX_DELTA,
        DEFAULT_MAX_EPSILON,
        DEFAULT_MIN_NOISE_MULTIPLIER,
    )

    floor = parser.add_argument_group(
        "privacy floor", "tasks whose privacy parameters are weaker are declined for good, "
        "with the reason, before any training")
    floor.add_argument("--min-noise-multiplier", type=float, default=DEFAULT_MIN_NOISE_MULTIPLIER,
                       help="lowest DP-SGD / distributed-DP noise multiplier accepted "
                       "(default %(default)s)")
    floor.add_argument("--max-epsilon", type=float, default=DEFAULT_MAX_EPSILON,
                       help="most epsilon a task may imply: local DP's total, one distributed-DP "
                       "round's (default %(default)s)")
    floor.add_argument("--max-delta", type=float, default=DEFAULT_MAX_DELTA,
                       help="largest delta accepted (default %(default)s)")
    floor.add_argument("--require-secure-aggregation", action="store_true",
                       help="decline tasks whose update the coordinator would see")
    floor.add_argument("--require-signed", action="store_true",
                       help="take part in signed secure-aggregation rounds only "
                       "(needs --secagg-key)")
    floor.add_argument("--no-privacy-floor", action="store_true",
                       help="accept any privacy parameters the coordinator sends (research only)")
    parser.add_argument("--secure-rng", action="store_true",
                        help="draw DP-SGD noise and batches, stochastic rounding and integer "
                        "noise from OS entropy / a CSPRNG (slower; see docs/privacy.md)")


def _privacy_floor(args: argparse.Namespace) -> Any:
    if args.no_privacy_floor:
        return None
    from fedcore.client.floor import PrivacyFloor

    return PrivacyFloor(
        min_noise_multiplier=args.min_noise_multiplier, max_epsilon=args.max_epsilon,
        max_delta=args.max_delta, require_secure_aggregation=args.require_secure_aggregation,
        require_signed=args.require_signed,
    )


def _secagg_identity(args: argparse.Namespace) -> Any:
    if args.secagg_key is None and args.secagg_roster is None:
        return None
    if args.secagg_key is None or args.secagg_roster is None or not args.client_id:
        raise ValueError("--secagg-key, --secagg-roster and --client-id go together")
    from fedcore.secagg.roster import SecAggIdentity

    return SecAggIdentity.load(args.client_id, args.secagg_key, args.secagg_roster)


def _partition(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an index or 'auto', got {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fedcore` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        match args.command:
            case "demo":
                return _demo(args)
            case "simulate":
                return _simulate(args)
            case "server":
                return _server(args)
            case "client":
                return _client(args)
            case "certs":
                return _certs(args)
            case "identity":
                return _identity(args)
            case "health":
                return _health(args)
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
            dp_epsilon=args.epsilon if args.dp else 0.0,
            secagg=args.secagg, signed=args.signed,
        )
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from fedcore.sim.config import load_simulation_config
    from fedcore.sim.progress import run_with_progress

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "rounds.num_rounds": args.rounds, "simulation.clients": args.clients,
            "simulation.backend": args.backend, "simulation.device": args.device,
            "simulation.seed": args.seed, "simulation.out_dir": args.out,
        }.items()
        if value is not None
    }
    run_with_progress(load_simulation_config(args.config, overrides))
    return 0


def _server(args: argparse.Namespace) -> int:
    from fedcore.config import load_config
    from fedcore.coordinator.process import run_coordinator
    from fedcore.report.plot import plot_history

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "server.address": args.address,
            "server.out_dir": args.out,
            "server.initial_model": args.initial_model,
            "server.auth_token_file": args.auth_token_file,
            "server.metrics_port": args.metrics_port,
            "tls.cert": args.tls_cert,
            "tls.key": args.tls_key,
            "tls.client_ca": args.tls_client_ca,
            "rounds.num_rounds": args.rounds,
            "rounds.clients_per_round": args.clients_per_round,
            "rounds.min_available": args.min_clients,
            "rounds.min_results": args.min_results,
            "rounds.round_timeout_s": args.round_timeout,
        }.items()
        if value is not None
    }
    plan = load_config(args.config, overrides)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # e.g. `docker stop`
    with _round_progress(args.progress, plan.run.engine.num_rounds) as on_round:
        records = run_coordinator(plan, resume=args.resume, stop=stop, on_round=on_round)
    if records:
        out = Path(plan.config.server.out_dir)
        plot_history([r.to_dict() for r in records], out / "training.png")
    return 0


@contextlib.contextmanager
def _round_progress(enabled: bool, total: int) -> Iterator[Callable[[Any], None] | None]:
    """A rich progress bar of completed rounds, or nothing."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]rounds"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"))
    task = progress.add_task("", total=total)

    def advance(record: Any) -> None:
        acc = "" if record.accuracy is None else f"accuracy {record.accuracy:.3f}"
        progress.update(task, completed=record.round, description=acc)

    with progress:
        yield advance


def _client(args: argparse.Namespace) -> int:
    import torch

    from fedcore.client import run_client
    from fedcore.demo.digits_app import DigitsSetup, make_app

    torch.set_num_threads(1)  # a small model: threads would only contend with other clients
    identity = _secagg_identity(args)  # fail on a bad key or roster before loading data
    floor = _privacy_floor(args)
    if floor is not None and floor.require_signed and identity is None:
        raise ValueError("--require-signed needs --secagg-key, --secagg-roster and --client-id")

    partition = args.partition
    if partition == "auto":
        from fedcore.data.claim import claim_partition

        owner = args.client_id or os.environ.get("HOSTNAME") or socket.gethostname()
        partition = claim_partition(args.partition_dir, args.num_partitions, owner)
        logging.getLogger("fedcore").info("claimed partition %d of %d", partition, args.num_partitions)
    app = make_app(
        DigitsSetup(num_clients=args.num_partitions, alpha=args.alpha, seed=args.seed),
        partition,
        device=args.device,
        privacy_dir=args.state_dir,
        secure_rng=args.secure_rng,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # leave cleanly on `docker stop`
    summary = run_client(
        app, args.server, client_id=args.client_id, stop=stop,
        auth_token=_read_token(args.auth_token_file), credentials=_channel_credentials(args),
        secagg_identity=identity, privacy_floor=floor, secure_rng=args.secure_rng,
    )
    logging.getLogger("fedcore").info(
        "client %s done: %d tasks, %d refused, %d reconnects",
        summary.client_id, summary.tasks_completed, summary.tasks_refused, summary.reconnects,
    )
    return 0


def _certs(args: argparse.Namespace) -> int:
    from fedcore.transport.certs import generate_pki

    written = generate_pki(
        args.out, clients=args.clients, hosts=tuple(args.hosts), token=args.token, force=args.force
    )
    print(f"wrote {len(written)} files to {args.out}" if written
          else f"{args.out}/ca.pem exists: kept (use --force to replace)")
    return 0


def _identity(args: argparse.Namespace) -> int:
    import base64

    from fedcore.secagg.roster import enrol

    public = enrol(args.client_id, args.key, args.roster)
    print(f"{args.client_id}: public key {base64.b64encode(public).decode()} is on {args.roster}")
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc

    from fedcore.transport.grpc.health import check_health

    try:
        status = check_health(args.server, credentials=_channel_credentials(args),
                              timeout_s=args.timeout)
    except grpc.RpcError as err:
        print(f"{args.server}: unreachable: {err.code().name}", file=sys.stderr)
        return 1
    print(f"{args.server}: {status}")
    return 0 if status == "SERVING" else 1


def _channel_credentials(args: argparse.Namespace) -> Any:
    if not (args.tls_ca or args.tls_cert):
        return None
    from fedcore.transport.grpc.tls import channel_credentials

    return channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)


def _read_token(path: Path | None) -> str:
    return path.read_text().strip() if path else ""


if __name__ == "__main__":
    sys.exit(main())
