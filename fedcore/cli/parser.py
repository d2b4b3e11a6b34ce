"""The `fedcore` command line: every subcommand, flag, default and help text."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from fedcore.cli import argtypes
from fedcore.cli.exits import EPILOG, ExitCode


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the flag, what is wrong, where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every flag's default where it has one, and keeps the epilog's lines."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or default is None
                or default is False or default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = Parser(prog="fedcore", formatter_class=Formatter, epilog=EPILOG,
                    description="Run a coordinator, a client, a simulation or the local demo.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="least severe log messages shown")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text lines, or one JSON object per line (for log collectors)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + ".",
            formatter_class=Formatter, epilog=EPILOG)
        return made

    _demo_args(command("demo", "a coordinator and N client processes on loopback (digits)"))
    _server_args(command("server", "run a coordinator"))
    _client_args(command("client", "run a bundled example client app"))

    identity = command(
        "identity", "enrol a client for signed secure aggregation: its key and the roster")
    identity.add_argument("--client-id", required=True, help="the client's stable id")
    identity.add_argument("--key", type=Path, required=True,
                          help="the client's identity key (PEM, 0600); created if missing")
    identity.add_argument("--roster", type=Path, required=True,
                          help="the roster (JSON) to add the client's public key to; created "
                          "if missing. Give a copy to the coordinator and to every client")

    certs = command("certs", "generate a demo CA, server and client certificates")
    certs.add_argument("--out", type=Path, required=True, help="directory for the PEM files")
    certs.add_argument("--clients", type=argtypes.int_at_least(0), default=3,
                       help="client certificates to issue, one per client: client-1..client-N "
                       "(the name is the client's id under mutual TLS)")
    certs.add_argument("--names", nargs="+", default=[], metavar="NAME",
                       help="issue one client certificate per name instead (NAME.pem, "
                       "NAME-key.pem; the name is the client's id)")
    certs.add_argument("--hosts", nargs="*", default=[], help="extra server names and IPs (SANs)")
    certs.add_argument("--token", action="store_true", help="also write a random shared token")
    certs.add_argument("--force", action="store_true", help="replace an existing CA")

    health = command("health", "ask a coordinator's gRPC health service; exit 0 if serving")
    health.add_argument("--server", required=True, type=argtypes.address,
                        help="coordinator host:port")
    health.add_argument("--timeout", type=argtypes.float_above(0), default=5.0,
                        help="seconds to wait for the answer")
    _tls_client_args(health)
    _simulate_args(command("simulate", "simulate a federation in this process (TOML config)"))
    return parser


def _demo_args(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--clients", type=argtypes.int_at_least(2), default=8,
                      help="number of client processes")
    demo.add_argument("--rounds", type=argtypes.int_at_least(1), default=20,
                      help="number of training rounds")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    demo.add_argument("--port", type=argtypes.port, default=0,
                      help="the coordinator's port on 127.0.0.1 (0: any free port)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the data split, the initial model and client selection")
    demo.add_argument("--alpha", type=argtypes.float_above(0), default=0.5,
                      help="Dirichlet label-skew alpha (smaller: more skewed clients)")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or auto (clients' device)")
    demo.add_argument("--dp", action="store_true", help="local DP-SGD on every client (Opacus)")
    demo.add_argument("--secagg", action="store_true",
                      help="secure aggregation: the coordinator only sees the sum of updates")
    demo.add_argument("--signed", action="store_true",
                      help="signed secure aggregation: enrol the clients (fedcore identity) and "
                      "check each other's keys against the roster; implies --secagg")
    demo.add_argument("--epsilon", type=argtypes.float_above(0), default=8.0,
                      help="with --dp: each client's epsilon budget over the run (delta 1e-5)")


def _server_args(server: argparse.ArgumentParser) -> None:
    from fedcore.config import BufferedSection, RoundsConfig, ServerConfig, TLSConfig

    def key(cls: type, section: str, name: str) -> str:
        return _key(getattr(cls(), name), section, name)

    server.add_argument("--config", type=Path,
                        help="TOML file (see server/coordinator.example.toml); flags override it")
    server.add_argument("--address", type=argtypes.address,
                        help=f"host:port to listen on {key(ServerConfig, 'server', 'address')}")
    server.add_argument("--out", help="directory for history files, checkpoints and runs.sqlite "
                        + key(ServerConfig, "server", "out_dir"))
    server.add_argument("--rounds", type=argtypes.int_at_least(1),
                        help=f"number of rounds {key(RoundsConfig, 'rounds', 'num_rounds')}")
    server.add_argument("--clients-per-round", type=argtypes.int_at_least(0),
                        help="clients selected for each round; 0: [rounds] fraction of those "
                        f"available {key(RoundsConfig, 'rounds', 'clients_per_round')}")
    server.add_argument("--min-clients", type=argtypes.int_at_least(1),
                        help="clients that must have joined before a round starts "
                        + key(RoundsConfig, "rounds", "min_available"))
    server.add_argument("--min-results", type=argtypes.int_at_least(1),
                        help="results a round needs to count "
                        + key(RoundsConfig, "rounds", "min_results"))
    server.add_argument("--round-timeout", type=argtypes.float_above(0),
                        help="seconds a round waits for results "
                        + key(RoundsConfig, "rounds", "round_timeout_s"))
    _buffered_args(server, key)
    server.add_argument("--buffer-size", type=argtypes.int_at_least(1),
                        help="FedBuff (implies --buffered): results per server step (K) "
                        + key(BufferedSection, "buffered", "buffer_size"))
    server.add_argument("--concurrency", type=argtypes.int_at_least(1),
                        help="FedBuff (implies --buffered): training tasks out at once "
                        + key(BufferedSection, "buffered", "concurrency"))
    server.add_argument("--task-timeout", type=argtypes.float_above(0),
                        help="FedBuff (implies --buffered): seconds before an unanswered task expires "
                        + key(BufferedSection, "buffered", "task_timeout_s"))
    server.add_argument("--initial-model", help=".npz of the operator's initial parameters "
                        "(a fresh run needs it, or --initial-model-from client) "
                        + key(ServerConfig, "server", "initial_model"))
    server.add_argument("--initial-model-from", choices=["operator", "client"],
                        help="client: opt in to taking the initial model from one "
                        "authenticated client (needs a token, mTLS or a roster) "
                        + key(ServerConfig, "server", "initial_model_from"))
    server.add_argument("--model-spec", help="JSON (or .npz) pinning the model's tensor names, "
                        "dtypes and shapes; other layouts are refused "
                        + key(ServerConfig, "server", "model_spec"))
    server.add_argument("--auth-token-file", help="file holding the clients' shared token "
                        + key(ServerConfig, "server", "auth_token_file"))
    server.add_argument("--tls-cert", help="PEM certificate: turns TLS on; none: plaintext "
                        + key(TLSConfig, "tls", "cert"))
    server.add_argument("--tls-key", help="PEM private key of --tls-cert "
                        + key(TLSConfig, "tls", "key"))
    server.add_argument("--tls-client-ca", help="PEM CA: require client certificates signed "
                        f"by it (mutual TLS) {key(TLSConfig, 'tls', 'client_ca')}")
    server.add_argument("--bind-client-ids", action=argparse.BooleanOptionalAction,
                        help="with mutual TLS, admit a client only under the id its "
                        "certificate names (CN or DNS SAN); on unless turned off "
                        + key(TLSConfig, "tls", "bind_client_ids"))
    server.add_argument("--metrics-port", type=argtypes.port, help="Prometheus port, 0: off "
                        + key(ServerConfig, "server", "metrics_port"))
    server.add_argument("--status-port", type=argtypes.port,
                        help="serve a live status page (rounds, clients, plots) on this port of "
                        "127.0.0.1, 0: off " + key(ServerConfig, "server", "status_port"))
    server.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    server.add_argument("--progress", action="store_true", help="show a progress bar of rounds")


def _client_args(client: argparse.ArgumentParser) -> None:
    client.add_argument("--server", required=True, type=argtypes.address,
                        help="coordinator host:port")
    client.add_argument("--app", default="digits", choices=["digits"], help="bundled app")
    client.add_argument("--partition", type=argtypes.partition, required=True,
                        help="this client's data slice: an index in 0..N-1 for "
                        "--num-partitions N, or auto (claim a free one)")
    client.add_argument("--partition-dir", type=Path, default=Path("/tmp/fedcore-partitions"),
                        help="directory shared by the clients for --partition auto")
    client.add_argument("--num-partitions", type=argtypes.int_at_least(1), required=True,
                        help="how many slices the data set is split into (give every client "
                        "the same)")
    client.add_argument("--alpha", type=argtypes.float_above(0), default=0.5,
                        help="Dirichlet label-skew alpha of the split (the same on every client)")
    client.add_argument("--seed", type=int, default=0,
                        help="seed of the data split (the same on every client)")
    client.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    client.add_argument("--client-id", help="stable id (default: the name in --tls-cert, "
                        "else a random one)")
    client.add_argument("--state-dir", type=Path,
                        help="directory keeping this client's state (e.g. privacy spent); none: "
                        "nothing is kept between runs")
    client.add_argument("--auth-token-file", type=Path,
                        help="file holding the shared token, when the coordinator requires one")
    _tls_client_args(client)
    client.add_argument("--tls-cert-dir", type=Path,
                        help="instead of --tls-cert/--tls-key: the directory of `fedcore certs "
                        "--clients N`; the client of partition p uses client-<p+1>.pem, so "
                        "each replica has its own certificate and id")
    _secagg_identity_args(client)
    _privacy_floor_args(client)


def _simulate_args(simulate: argparse.ArgumentParser) -> None:
    from fedcore.config import RoundsConfig
    from fedcore.sim.config import BackendKind, RunConfig

    def key(cls: type, section: str, name: str) -> str:
        default: Any = getattr(cls(), name)
        return _key(getattr(default, "value", default), section, name)  # an enum: its value

    simulate.add_argument("--config", type=Path,
                          help="TOML file (see benchmarks/configs/); flags override it")
    simulate.add_argument("--rounds", type=argtypes.int_at_least(1),
                          help=f"number of rounds {key(RoundsConfig, 'rounds', 'num_rounds')}")
    _buffered_args(simulate, key)
    simulate.add_argument("--clients", type=argtypes.int_at_least(1),
                          help="registered (virtual) clients "
                          + key(RunConfig, "simulation", "clients"))
    simulate.add_argument("--backend", choices=[b.value for b in BackendKind],
                          help="how local training runs "
                          + key(RunConfig, "simulation", "backend"))
    simulate.add_argument("--device", help=f"cpu or cuda {key(RunConfig, 'simulation', 'device')}")
    simulate.add_argument("--seed", type=int, help="seed of data, selection and training "
                          + key(RunConfig, "simulation", "seed"))
    simulate.add_argument("--out", help="directory for history files "
                          + key(RunConfig, "simulation", "out_dir"))
    simulate.add_argument("--tensorboard", action="store_true", default=None,
                          help="also write TensorBoard event files to OUT/tensorboard (needs "
                          "the [tensorboard] extra) " + key(RunConfig, "simulation",
                                                            "tensorboard"))


def _buffered_args(parser: argparse.ArgumentParser, key: Callable[[type, str, str], str]) -> None:
    """--buffered and --num-updates, which `fedcore server` and `fedcore simulate` share."""
    from fedcore.config import BufferedSection

    parser.add_argument("--buffered", action="store_true", default=None,
                        help="asynchronous buffered aggregation (FedBuff) instead of rounds: "
                        "the [buffered] table, with its defaults where the file has none")
    parser.add_argument("--num-updates", type=argtypes.int_at_least(1),
                        help="FedBuff (implies --buffered): server steps in the run "
                        + key(BufferedSection, "buffered", "num_updates"))


def _key(default: Any, section: str, name: str) -> str:
    """Where a flag's value comes from when it is not given: its TOML key and default."""
    shown = "none" if default == "" else repr(default)
    return f"(default: {shown}; TOML: [{section}] {name})"


def _tls_client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", help="PEM CA that signed the coordinator's certificate: "
                        "connect with TLS (without it: plaintext)")
    parser.add_argument("--tls-cert", help="PEM client certificate, when the coordinator "
                        "requires one (mutual TLS)")
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
