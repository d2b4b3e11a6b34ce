"""What each `fedcore` subcommand does once its flags are parsed."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fedcore.cli.exits import ExitCode


def privacy_floor(args: argparse.Namespace) -> Any:
    if args.no_privacy_floor:
        return None
    from fedcore.client.floor import PrivacyFloor

    return PrivacyFloor(
        min_noise_multiplier=args.min_noise_multiplier, max_epsilon=args.max_epsilon,
        max_delta=args.max_delta, require_secure_aggregation=args.require_secure_aggregation,
        require_signed=args.require_signed,
    )


def secagg_identity(args: argparse.Namespace) -> Any:
    if args.secagg_key is None and args.secagg_roster is None:
        return None
    if args.secagg_key is None or args.secagg_roster is None or not args.client_id:
        raise ValueError("--secagg-key, --secagg-roster and --client-id go together")
    from fedcore.storage.identity_files import load_identity

    return load_identity(args.client_id, args.secagg_key, args.secagg_roster)


def demo(args: argparse.Namespace) -> int:
    if args.clients < 2 or args.rounds < 1:
        raise ValueError("--clients must be >= 2 and --rounds >= 1")
    if args.port:
        _check_listen(f"127.0.0.1:{args.port}", "--port")
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    from fedcore.demo.run import DemoConfig, run_demo

    run_demo(
        DemoConfig(
            clients=args.clients, rounds=args.rounds, out_dir=args.out, seed=args.seed,
            alpha=args.alpha, device=args.device,
            dp_epsilon=args.epsilon if args.dp else 0.0,
            secagg=args.secagg, signed=args.signed, port=args.port,
        )
    )
    return ExitCode.OK


def simulate(args: argparse.Namespace) -> int:
    from fedcore.sim.config import load_simulation_config
    from fedcore.sim.progress import run_with_progress

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "rounds.num_rounds": args.rounds, "simulation.clients": args.clients,
            "simulation.backend": args.backend, "simulation.device": args.device,
            "simulation.seed": args.seed, "simulation.out_dir": args.out,
            "simulation.tensorboard": args.tensorboard,
            **_buffered_overrides(args),
        }.items()
        if value is not None
    }
    run_with_progress(load_simulation_config(args.config, overrides))
    return 0


def server(args: argparse.Namespace) -> int:
    from fedcore.config import load_config
    from fedcore.coordinator.process import run_coordinator
    from fedcore.report.plot import plot_history

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "server.address": args.address,
            "server.out_dir": args.out,
            "server.initial_model": args.initial_model,
            "server.initial_model_from": args.initial_model_from,
            "server.model_spec": args.model_spec,
            "server.auth_token_file": args.auth_token_file,
            "server.metrics_port": args.metrics_port,
            "server.status_port": args.status_port,
            "tls.cert": args.tls_cert,
            "tls.key": args.tls_key,
            "tls.client_ca": args.tls_client_ca,
            "tls.bind_client_ids": args.bind_client_ids,
            "rounds.num_rounds": args.rounds,
            "rounds.clients_per_round": args.clients_per_round,
            "rounds.min_available": args.min_clients,
            "rounds.min_results": args.min_results,
            "rounds.round_timeout_s": args.round_timeout,
            **_buffered_overrides(args),
            "buffered.buffer_size": args.buffer_size,
            "buffered.concurrency": args.concurrency,
            "buffered.task_timeout_s": args.task_timeout,
        }.items()
        if value is not None
    }
    plan = load_config(args.config, overrides)
    _check_listen(plan.config.server.address,
                  "--address" if args.address is not None else "[server] address")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # e.g. `docker stop`
    buffered = plan.run.buffered
    steps = plan.run.engine.num_rounds if buffered is None else buffered.num_updates
    with _round_progress(args.progress, steps) as on_round:
        records = run_coordinator(plan, resume=args.resume, stop=stop, on_round=on_round)
    if records:
        out = Path(plan.config.server.out_dir)
        plot_history([r.to_dict() for r in records], out / "training.png")
    return 0


def _buffered_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--buffered (the [buffered] table, present) and --num-updates as dotted keys."""
    return {"buffered": {} if args.buffered else None, "buffered.num_updates": args.num_updates}


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


def client(args: argparse.Namespace) -> int:
    partition = args.partition
    if partition != "auto" and partition >= args.num_partitions:
        raise ValueError(f"--partition {partition} is out of range for --num-partitions "
                         f"{args.num_partitions}: use 0..{args.num_partitions - 1}, or auto")
    identity = secagg_identity(args)  # fail on a bad key or roster before loading data
    floor = privacy_floor(args)
    if floor is not None and floor.require_signed and identity is None:
        raise ValueError("--require-signed needs --secagg-key, --secagg-roster and --client-id")
    token = _read_token(args.auth_token_file)
    log = logging.getLogger("fedcore")
    log.info("preparing the %s app and its data (partition %s of %d)", args.app, partition,
             args.num_partitions)
    import torch

    from fedcore.client import Callbacks, Refused, run_client
    from fedcore.demo.digits_app import DigitsSetup, make_app

    torch.set_num_threads(1)  # a small model: threads would only contend with other clients
    if partition == "auto":
        from fedcore.data.claim import claim_partition

        owner = args.client_id or os.environ.get("HOSTNAME") or socket.gethostname()
        partition = claim_partition(args.partition_dir, args.num_partitions, owner)
        logging.getLogger("fedcore").info("claimed partition %d of %d", partition, args.num_partitions)
    _client_certificate(args, partition)
    app = make_app(
        DigitsSetup(num_clients=args.num_partitions, alpha=args.alpha, seed=args.seed),
        partition,
        device=args.device,
        privacy_dir=args.state_dir,
        secure_rng=args.secure_rng,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # leave cleanly on `docker stop`
    refusals: list[Refused] = []
    summary = run_client(
        app, args.server, client_id=args.client_id, stop=stop,
        callbacks=Callbacks(on_refused=refusals.append),
        auth_token=token, credentials=_channel_credentials(args),
        secagg_identity=identity, privacy_floor=floor, secure_rng=args.secure_rng,
    )
    log.info("client %s done: %d tasks, %d refused, %d reconnects",
             summary.client_id, summary.tasks_completed, summary.tasks_refused,
             summary.reconnects)
    if refusals and not summary.tasks_completed:
        last = refusals[-1]
        print(f"fedcore client: refused: every task it was given ({len(refusals)}) was refused; "
              f"the last by the {last.by.value}: {last.reason}", file=sys.stderr)
        return ExitCode.REFUSED
    return ExitCode.OK


def certs(args: argparse.Namespace) -> int:
    from fedcore.transport.certs import generate_pki

    written = generate_pki(
        args.out, clients=0 if args.names else args.clients, names=tuple(args.names),
        hosts=tuple(args.hosts), token=args.token, force=args.force,
    )
    print(f"wrote {len(written)} files to {args.out}" if written
          else f"{args.out}/ca.pem exists: kept (use --force to replace)")
    return 0


def identity(args: argparse.Namespace) -> int:
    import base64

    from fedcore.storage.identity_files import enrol

    public = enrol(args.client_id, args.key, args.roster)
    print(f"{args.client_id}: public key {base64.b64encode(public).decode()} is on {args.roster}")
    return 0


def health(args: argparse.Namespace) -> int:
    import grpc

    from fedcore.transport.grpc.health import check_health

    try:
        status = check_health(args.server, credentials=_channel_credentials(args),
                              timeout_s=args.timeout)
    except grpc.RpcError as err:
        from fedcore.transport.probe import diagnose

        reason = diagnose(args.server, tls=args.tls_ca is not None or args.tls_cert is not None,
                          timeout_s=min(args.timeout, 2.0))
        print(f"{args.server}: unreachable ({err.code().name}): {reason}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"{args.server}: {status}")
    return ExitCode.OK if status == "SERVING" else ExitCode.FAILED


def _check_listen(address: str, source: str) -> None:
    """Fail at start, in one line naming `source` (the flag or key), if `address` cannot be
    listened on."""
    from fedcore.transport.probe import AddressError, check_listen

    try:
        check_listen(address)
    except AddressError as err:
        raise AddressError(f"{source}: {err}") from None


def _client_certificate(args: argparse.Namespace, partition: int) -> None:
    """Set `--tls-cert`/`--tls-key` from `--tls-cert-dir` (the partition's certificate) and
    `--client-id`, when not given, to the name the certificate carries (the id a coordinator
    that binds ids to certificates admits)."""
    if args.tls_cert_dir is not None:
        if args.tls_cert or args.tls_key:
            raise ValueError("--tls-cert-dir replaces --tls-cert and --tls-key: give one or the "
                             "other")
        args.tls_cert = str(args.tls_cert_dir / f"client-{partition + 1}.pem")
        args.tls_key = str(args.tls_cert_dir / f"client-{partition + 1}-key.pem")
    if args.tls_cert and not args.client_id:
        from fedcore.transport.certs import client_identity

        try:
            args.client_id = client_identity(Path(args.tls_cert).read_bytes())
        except OSError as err:
            raise ValueError(f"cannot read the client certificate {args.tls_cert}: "
                             f"{err.strerror}") from err


def _channel_credentials(args: argparse.Namespace) -> Any:
    if not (args.tls_ca or args.tls_cert):
        return None
    from fedcore.transport.grpc.tls import channel_credentials

    return channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)


def _read_token(path: Path | None) -> str:
    """The shared token in `path` ("" for none), or a one-line error naming the flag."""
    if path is None:
        return ""
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise ValueError(f"--auth-token-file: cannot read {path}: {err.strerror}") from None
    if not token:
        raise ValueError(f"--auth-token-file: {path} is empty")
    return token
