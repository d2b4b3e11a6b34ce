"""A coordinator process: the gRPC server plus what operations need around it.

Wires TLS, token authentication, the SQLite run store, per-round checkpoints, `--resume`,
Prometheus metrics, the live status page and the history files around a `RoundEngine` (or, with
[buffered], a `BufferedCoordinator`, checkpointed after each server step) and
`CoordinatorServer`.
Installs no signal handler: the caller (the CLI) sets `stop` to end the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

from fedcore.config import ConfigError, CoordinatorConfig, InitialModelFrom, ServerPlan, TLSConfig
from fedcore.coordinator.metrics import CoordinatorMetrics
from fedcore.coordinator.model_files import load_model_spec, load_npz
from fedcore.coordinator.progress_log import ProgressLog
from fedcore.coordinator.status_page import StatusBoard, StatusPage
from fedcore.engine import RoundEngine, RoundRecord
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.plan import build_buffered, build_run
from fedcore.report.history import HistoryWriter
from fedcore.storage.checkpoints import (
    FILENAME,
    load_buffered_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from fedcore.storage.run_store import RunStore
from fedcore.transport.grpc.observer import Observers
from fedcore.transport.grpc.server import CoordinatorServer
from fedcore.transport.grpc.tls import server_credentials

log = logging.getLogger(__name__)

NO_INITIAL_MODEL = (
    "no initial model: pass --initial-model FILE.npz (server.initial_model), or opt in to a "
    "client's with --initial-model-from client (server.initial_model_from = \"client\")"
)


def run_coordinator(
    plan: ServerPlan,
    *,
    resume: bool = False,
    stop: threading.Event | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_start: Callable[[CoordinatorServer, int], None] | None = None,
) -> list[RoundRecord]:
    """Serve the run `plan` describes until it ends or `stop` is set; returns the records.

    Args:
        plan: the coordinator configuration and its run (`fedcore.config.load_config`).
        resume: continue from the checkpoint in `server.out_dir` (a new run when there is none).
        stop: set it to stop serving; the last checkpoint (after the last completed round) stays.
        on_round: also called with each completed round (e.g. a progress display).
        on_start: called once serving, with the server and the metrics port (0: off).

    Raises:
        ConfigError: a checkpoint exists but `resume` is off, or a file cannot be read.
    """
    config = plan.config
    out = Path(config.server.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine = build_engine(plan, resume=resume)
    history = HistoryWriter(out)
    history.rows = [r.to_dict() for r in engine.records]
    store = RunStore(out / config.server.run_store) if config.server.run_store else None
    metrics = CoordinatorMetrics() if config.server.metrics_port else None
    status = _status_page(plan, engine)
    progress = ProgressLog(num_rounds=_length(plan), min_clients=_min_clients(plan),
                           phase=lambda: engine.phase.value, rounds_done=engine.round_number)

    def round_done(record: RoundRecord) -> None:
        # checkpoint first: a round the history shows is never lost to a crash in between
        snapshot = engine.snapshot()
        if config.server.checkpoint and snapshot is not None:
            save_checkpoint(out, snapshot)
        history.append(record)
        if on_round is not None:
            on_round(record)

    server = CoordinatorServer(
        engine,
        address=config.server.address,
        on_round=round_done,
        credentials=build_credentials(config.tls),
        auth_token=read_token(config.server.auth_token_file),
        long_poll_s=config.server.long_poll_s,
        bind_client_ids=bool(config.tls.client_ca) and config.tls.bind_client_ids,
        observer=Observers(*(o for o in (metrics, store, status and status.board, progress)
                             if o is not None)),
    )
    try:
        server.start()
        metrics_port = (
            metrics.serve(config.server.metrics_port, config.server.metrics_address) if metrics else 0
        )
        log.info(
            "coordinator serving on %s (%s), writing %s", config.server.address,
            _security(config), out,
        )
        if status is not None:
            status.serve(config.server.status_port, config.server.status_address)
        if on_start is not None:
            on_start(server, metrics_port)
        _wait(server, stop or threading.Event())
    finally:
        server.stop()
        if metrics is not None:
            metrics.close()
        if status is not None:
            status.close()
        if store is not None:
            store.close()
    return engine.records


def build_engine(plan: ServerPlan, *, resume: bool) -> RoundEngine | BufferedCoordinator:
    """A fresh engine, or one restored from the checkpoint in `server.out_dir` (a buffered
    run's, served by a `BufferedCoordinator`, when `plan.run.buffered` is set)."""
    config = plan.config
    out = Path(config.server.out_dir)
    if plan.run.buffered is not None:
        return _buffered_coordinator(plan, resume=resume)
    spec = load_model_spec(Path(config.server.model_spec)) if config.server.model_spec else None
    snapshot = load_checkpoint(out)
    if snapshot is not None and not resume:
        raise ConfigError(
            f"{out / FILENAME} holds round {snapshot.round} of an earlier run: pass --resume to "
            "continue it, or choose another output directory"
        )
    try:
        if snapshot is not None:
            log.info("resuming after round %d from %s", snapshot.round, out / FILENAME)
            return build_run(plan.run, snapshot=snapshot, model_spec=spec)
        if resume:
            log.info("no checkpoint in %s: starting a new run", out)
        from_client = initial_model_from_client(plan)
        initial = load_npz(Path(config.server.initial_model)) if config.server.initial_model else None
        return build_run(plan.run, initial_params=initial, initial_from_client=from_client,
                         model_spec=spec)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _buffered_coordinator(plan: ServerPlan, *, resume: bool) -> BufferedCoordinator:
    config = plan.config
    out = Path(config.server.out_dir)
    snapshot = load_buffered_checkpoint(out)
    if snapshot is not None and not resume:
        raise ConfigError(
            f"{out / FILENAME} holds version {snapshot.version} of an earlier buffered run: pass "
            "--resume to continue it, or choose another output directory"
        )
    if config.server.initial_model_from is InitialModelFrom.CLIENT:
        raise ConfigError("server.initial_model_from = \"client\" is for round-based runs: a "
                          "buffered run ([buffered]) starts from server.initial_model "
                          "(--initial-model)")
    try:
        if snapshot is not None:
            log.info("resuming a buffered run at version %d from %s", snapshot.version,
                     out / FILENAME)
            engine = build_buffered(plan.run, snapshot=snapshot)
        else:
            if resume:
                log.info("no checkpoint in %s: starting a new run", out)
            initial = (load_npz(Path(config.server.initial_model))
                       if config.server.initial_model else None)
            engine = build_buffered(plan.run, initial_params=initial)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return BufferedCoordinator(engine, plan.run.engine)


def _length(plan: ServerPlan) -> int:
    """Rounds, or a buffered run's server steps."""
    buffered = plan.run.buffered
    return plan.run.engine.num_rounds if buffered is None else buffered.num_updates


def _min_clients(plan: ServerPlan) -> int:
    """Clients a round waits for (a buffered run hands a task to the first who asks)."""
    return plan.run.engine.train.min_available if plan.run.buffered is None else 1


def initial_model_from_client(plan: ServerPlan) -> bool:
    """Whether a fresh run takes its first model from a client: only when the operator opted
    in and clients are authenticated (token, client certificates or a roster).

    Raises:
        ConfigError: no initial model and no opt-in (saying what to pass), or the opt-in
            without authenticated clients.
    """
    config = plan.config
    if config.server.initial_model_from is InitialModelFrom.OPERATOR:
        if not config.server.initial_model and plan.run.initial_model is None:
            raise ConfigError(NO_INITIAL_MODEL)
        return False
    if plan.run.initial_model is not None:
        raise ConfigError("server.initial_model_from = \"client\" and the run plan's "
                          "initial_model exclude each other")
    roster = config.secagg.roster if config.secagg is not None else None
    if not (config.server.auth_token_file or config.tls.client_ca or roster is not None):
        raise ConfigError("server.initial_model_from = \"client\" needs authenticated clients, "
                          "so that no stranger can supply the model: set server.auth_token_file, "
                          "tls.client_ca or a secagg roster (or pass --initial-model)")
    return True


def _status_page(plan: ServerPlan, engine: RoundEngine | BufferedCoordinator
                 ) -> StatusPage | None:
    """The live status page `server.status_port` asks for (not yet serving), or None."""
    if not plan.config.server.status_port:
        return None
    board = StatusBoard(
        num_rounds=_length(plan), min_clients=_min_clients(plan),
        phase=lambda: engine.phase.value, records=engine.records,
    )
    return StatusPage(board)


def build_credentials(tls: TLSConfig) -> grpc.ServerCredentials | None:
    """Server TLS credentials from `[tls]`, or None for plaintext."""
    if not tls.cert:
        return None
    return server_credentials(tls.cert, tls.key, tls.client_ca or None)


def read_token(path: str | Path | None) -> str:
    """The shared token in `path` (stripped), or "" when no file is configured."""
    if not path:
        return ""
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise ConfigError(f"cannot read the auth token file {path}: {err.strerror}") from err
    if not token:
        raise ConfigError(f"the auth token file {path} is empty")
    return token


def _wait(server: CoordinatorServer, stop: threading.Event) -> None:
    while not server.wait(0.25):
        if stop.is_set():
            log.info("stopping: the checkpoint of the last completed round is kept")
            return


def _security(config: CoordinatorConfig) -> str:
    tls = "mutual TLS" if config.tls.client_ca else "TLS" if config.tls.cert else "plaintext"
    token = ", token required" if config.server.auth_token_file else ""
    return tls + token
