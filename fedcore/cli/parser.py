"""The `fedcore` command line: every subcommand, flag, default and help text."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="fedcore", description="Run a coordinator, a client, a simulation or the local demo.")
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
    server.add_argument("--initial-model", help=".npz of the operator's initial parameters (a "
                        "fresh run needs it, or --initial-model-from client) [server.initial_model]")
    server.add_argument("--initial-model-from", choices=["operator", "client"],
                        help="client: opt in to taking the initial model from one authenticated "
                        "client (needs a token, mTLS or a roster) [server.initial_model_from]")
    server.add_argument("--model-spec", help="JSON (or .npz) pinning the model's tensor names, "
                        "dtypes and shapes; other layouts are refused [server.model_spec]")
    server.add_argument("--auth-token-file", help="file holding the clients' shared token "
                        "[server.auth_token_file]")
    server.add_argument("--tls-cert", help="PEM certificate: turns TLS on [tls.cert]")
    server.add_argument("--tls-key", help="PEM private key of --tls-cert [tls.key]")
    server.add_argument("--tls-client-ca", help="PEM CA: require client certs (mTLS) [tls.client_ca]")
    server.add_argument("--bind-client-ids", action=argparse.BooleanOptionalAction,
                        help="with mutual TLS, admit a client only under the id its certificate "
                        "names (CN or DNS SAN); on unless turned off [tls.bind_client_ids]")
    server.add_argument("--metrics-port", type=int, help="Prometheus port, 0: off [server.metrics_port]")
    server.add_argument("--status-port", type=int,
                        help="serve a live status page (rounds, clients, plots) on this port of "
                        "127.0.0.1, 0: off [server.status_port]")
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
    client.add_argument("--client-id", help="stable id (default: the name in --tls-cert, else "
                        "a random one)")
    client.add_argument("--state-dir", type=Path,
                        help="directory keeping this client's state (e.g. privacy spent)")
    client.add_argument("--auth-token-file", type=Path, help="file holding the shared token")
    _tls_client_args(client)
    client.add_argument("--tls-cert-dir", type=Path,
                        help="instead of --tls-cert/--tls-key: the directory of `fedcore certs "
                        "--clients N`; the client of partition p uses client-<p+1>.pem, so "
                        "each replica has its own certificate and id")
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
    certs.add_argument("--clients", type=int, default=3,
                       help="client certificates to issue, one per client: client-1..client-N "
                       "(the name is the client's id under mutual TLS)")
    certs.add_argument("--names", nargs="+", default=[], metavar="NAME",
                       help="issue one client certificate per name instead (NAME.pem, "
                       "NAME-key.pem; the name is the client's id)")
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


def _partition(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an index or 'auto', got {value!r}") from None
