"""Load: many real gRPC clients against one coordinator process, with stalled upload streams.

`python -m benchmarks.load --clients 1000 [--rounds 10] [--procs 4] [--params 1000]
[--stallers 100]` prints one JSON line.

The coordinator is a `fedcore server` subprocess (plaintext on loopback, the operator's
initial model of `--params` float32, every client selected each round, no evaluation). The
clients speak the real protocol over their own gRPC channel each (`grpc.aio`, `--procs`
worker processes with an asyncio loop each, not the full SDK, which runs a thread per
client): `Join`, then long-poll `GetTask`; for a task, `DownloadModel` and a `SubmitResult`
stream (header, then the update in one chunk), until `Done`.

From the moment the coordinator has recorded half of the rounds, a staller process holds
`--stallers` `SubmitResult` streams open that send nothing (each reopened as soon as the
coordinator ends it) and as many `SubmitResult` streams that send a header and then stall;
`round_s_without_stallers` and `round_s_with_stallers` compare the rounds' durations (the
coordinator's `history.json`) on either side of that point, and
`coord_cpu_round_s_without_stallers` / `..._with_stallers` the coordinator's CPU seconds per
round (steadier than durations when other work shares the machine);
`stalls_ended_by_server` counts streams the coordinator closed on its own (idle deadline,
`--upload-idle-s`).

Figures: `join_p50_s`/`join_p99_s`, the `Join` RPC latency of all clients joining at once;
`round_s_median`/`round_s_max` over the rounds after the first; `coord_rss_mb` (VmRSS at the
end), `coord_hwm_mb` (VmHWM, the peak), `coord_cpu_s` (the coordinator's CPU seconds over the
whole run) and `coord_cpu_per_round_s`; `load_avg_1m` when the run started (other work on the
machine slows everything). `rounds_ok` must equal `rounds`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.messages import PROTOCOL_VERSION

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- coordinator
def free_port() -> int:
    """A loopback port that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_coordinator(out: Path, port: int, *, clients: int, rounds: int, params: int,
                      round_timeout_s: float, upload_idle_s: float | None = None,
                      extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """`fedcore server` on 127.0.0.1:`port`, selecting all `clients` each round, no evaluation
    (and `[limits] upload_idle_s` when given); its log goes to `out`/coordinator.log."""
    out.mkdir(parents=True, exist_ok=True)
    model = out / "initial.npz"
    np.savez(model, w=np.zeros(params, np.float32))
    config = out / "load.toml"
    toml = "[rounds]\neval_fraction = 0.0\n"
    if upload_idle_s is not None:
        toml += f"[limits]\nupload_idle_s = {upload_idle_s}\n"
    config.write_text(toml)
    log = (out / "coordinator.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "fedcore.cli", "server", "--config", str(config),
         "--address", f"127.0.0.1:{port}", "--out", str(out), "--rounds", str(rounds),
         "--min-clients", str(clients), "--clients-per-round", str(clients),
         "--min-results", str(clients), "--round-timeout", str(round_timeout_s),
         "--initial-model", str(model), *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )


def history(out: Path) -> list[dict[str, Any]]:
    """The coordinator's round records so far (history.json; [] before the first)."""
    try:
        return list(json.loads((out / "history.json").read_text())["rounds"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


@dataclass(frozen=True, slots=True)
class ProcStats:
    """What /proc says about a process: resident and peak memory (MB), CPU seconds."""

    rss_mb: float
    hwm_mb: float
    cpu_s: float


def proc_stats(pid: int) -> ProcStats:
    """VmRSS, VmHWM and user + system CPU of `pid`, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime
    return ProcStats(rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
                     hwm_mb=int(fields["VmHWM"].split()[0]) / 1024, cpu_s=cpu)


# ----------------------------------------------------------------------------- clients
def _options() -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            # connect soon after the coordinator is up (gRPC's default backoff grows to 2 min)
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000)]


@dataclass(slots=True)
class ClientStats:
    """One worker's clients, summed."""

    join_s: list[float] = field(default_factory=list)
    tasks: int = 0
    errors: list[str] = field(default_factory=list)
    finished: int = 0


async def _submit(stub: pb_grpc.CoordinatorStub, header: pb.ResultHeader, payload: bytes) -> None:
    async def parts():  # type: ignore[no-untyped-def]
        yield pb.ResultChunk(header=header)
        if payload:
            yield pb.ResultChunk(chunk=tpb.Chunk(offset=0, data=payload))

    await stub.SubmitResult(parts(), timeout=60)


async def one_client(address: str, client_id: str, stats: ClientStats, start: asyncio.Event) -> None:
    """One client: join, then work through tasks until the coordinator says done."""
    async with grpc.aio.insecure_channel(address, options=_options()) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        await channel.channel_ready()
        await start.wait()
        t0 = time.perf_counter()
        reply = await stub.Join(pb.JoinRequest(client_id=client_id,
                                               protocol_version=PROTOCOL_VERSION), timeout=120)
        stats.join_s.append(time.perf_counter() - t0)
        creds = pb.Credentials(client_id=client_id, session=reply.session)
        poll_s = (reply.long_poll_s or 5.0) + 30.0
        while True:
            task_reply = await stub.GetTask(pb.TaskRequest(credentials=creds), timeout=poll_s)
            which = task_reply.WhichOneof("reply")
            if which == "done":
                stats.finished += 1
                return
            if which == "wait":
                await asyncio.sleep(min(task_reply.wait.retry_after_s, 1.0))
                continue
            task = task_reply.task
            stats.tasks += 1
            if task.kind == pb.TRAIN:
                spec, size = None, 0
                async for chunk in stub.DownloadModel(
                        pb.DownloadRequest(credentials=creds, task_id=task.task_id), timeout=60):
                    if chunk.HasField("spec"):
                        spec = chunk.spec
                    size += len(chunk.chunk.data)
                # the update: a small constant, as many bytes as the model (float32 tensors)
                update = np.full(size // 4, 1e-3, np.float32).tobytes()
                header = pb.ResultHeader(credentials=creds, task_id=task.task_id, num_examples=1,
                                         metrics={"loss": 0.0}, spec=spec)
                await _submit(stub, header, update)
            else:  # EVALUATE (not configured here): answer with a loss and no tensors
                await _submit(stub, pb.ResultHeader(credentials=creds, task_id=task.task_id,
                                                    num_examples=1, metrics={"loss": 0.0}), b"")


async def _worker(address: str, client_ids: list[str]) -> ClientStats:
    stats = ClientStats()
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_client(address, cid, stats, start)) for cid in client_ids]
    await asyncio.sleep(0.5)  # channels connect first, so that joins land together
    start.set()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            stats.errors.append(repr(outcome)[:300])
    return stats


def client_worker(address: str, client_ids: list[str], results: Any) -> None:
    """A worker process: `client_ids` as asyncio tasks; puts its `ClientStats` as a dict."""
    stats = asyncio.run(_worker(address, client_ids))
    results.put({"join_s": stats.join_s, "tasks": stats.tasks, "errors": stats.errors,
                 "finished": stats.finished})


# ----------------------------------------------------------------------------- stallers
async def _stall(stub: pb_grpc.CoordinatorStub, stop: asyncio.Event, ends: dict[str, int]) -> None:
    """Hold a SubmitResult stream that sends nothing; reopen it whenever the server ends it."""
    while not stop.is_set():
        async def nothing():  # type: ignore[no-untyped-def]
            await stop.wait()
            return
            yield  # pragma: no cover  (makes this an async generator that yields nothing)

        try:
            await stub.SubmitResult(nothing())
        except grpc.aio.AioRpcError as err:
            if not stop.is_set():
                ends[err.code().name] = ends.get(err.code().name, 0) + 1
                await asyncio.sleep(0.05)


async def _stallers(address: str, count: int, go: MpEvent, ready: MpEvent,
                    stop_evt: MpEvent) -> dict[str, Any]:
    ends: dict[str, int] = {}
    while not go.is_set():
        if stop_evt.is_set():
            return {"streams": 0, "ended_by_server": ends}
        await asyncio.sleep(0.05)
    stop = asyncio.Event()
    channels = [grpc.aio.insecure_channel(address, options=_options()) for _ in range(count)]
    await asyncio.gather(*(channel.channel_ready() for channel in channels))
    tasks = [asyncio.create_task(_stall(pb_grpc.CoordinatorStub(channel), stop, ends))
             for channel in channels]
    await asyncio.sleep(0.2)  # the streams are open on the server
    ready.set()
    while not stop_evt.is_set():
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return {"streams": count, "ended_by_server": ends}


def staller_worker(address: str, count: int, go: MpEvent, ready: MpEvent, stop: MpEvent,
                   results: Any) -> None:
    """A process holding `count` stalled upload streams (one channel each) from `go` to `stop`."""
    results.put({"stallers": asyncio.run(_stallers(address, count, go, ready, stop))})


# ----------------------------------------------------------------------------- driver
def _split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(clients: int, rounds: int, procs: int, params: int, stallers: int, out: Path, *,
        stall_from: int | None = None, upload_idle_s: float | None = None,
        timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the load; returns the figures (see the module docstring). Stalled streams open once
    `stall_from` rounds are recorded (default: half of them; 0: before the clients start)."""
    load_avg = os.getloadavg()[0]
    port = free_port()
    address = f"127.0.0.1:{port}"
    coord = start_coordinator(out, port, clients=clients, rounds=rounds, params=params,
                              round_timeout_s=timeout_s, upload_idle_s=upload_idle_s)
    ctx = mp.get_context("spawn")  # no fork after gRPC has started threads
    results = ctx.Queue()
    go, ready, stop = ctx.Event(), ctx.Event(), ctx.Event()
    ids = [f"load-{i:05d}" for i in range(clients)]
    workers: list[SpawnProcess] = [
        ctx.Process(target=client_worker, args=(address, part, results), daemon=True)
        for part in _split(ids, procs)]
    staller = ctx.Process(target=staller_worker, args=(address, stallers, go, ready, stop, results),
                          daemon=True)
    peak_rss = 0.0
    stats = ProcStats(0.0, 0.0, 0.0)
    stall_from = max(1, rounds // 2) if stall_from is None else stall_from
    stalled_after: int | None = None  # rounds recorded when the stalled streams were all open
    cpu_marks: list[float] = []  # the coordinator's CPU seconds when each round was recorded
    end = time.monotonic() + timeout_s
    try:
        staller.start()
        if stallers and stall_from == 0:
            go.set()
            while not ready.wait(0.2):
                if coord.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("the stalled streams did not open")
            stalled_after = -1
        for p in workers:
            p.start()
        while coord.poll() is None and time.monotonic() < end:
            stats = proc_stats(coord.pid)
            peak_rss = max(peak_rss, stats.rss_mb)
            while len(cpu_marks) < len(history(out)):
                cpu_marks.append(stats.cpu_s)
            if stallers and not go.is_set() and len(history(out)) >= stall_from:
                go.set()
            if ready.is_set() and stalled_after is None:
                stalled_after = len(history(out))
            if len(history(out)) >= rounds:
                stop.set()  # the stalled streams end now, before the coordinator lingers and exits
            time.sleep(0.2)
        stop.set()
        if coord.poll() is None:
            raise RuntimeError(f"the coordinator did not finish in {timeout_s}s")
        if coord.returncode != 0:
            raise RuntimeError(f"the coordinator exited with {coord.returncode}: see "
                               f"{out / 'coordinator.log'}")
        outs = [results.get(timeout=60) for _ in [*workers, staller]]
    finally:
        stop.set()
        for p in [*workers, staller]:
            if p.pid is not None:
                p.join(30)
                if p.is_alive():
                    p.kill()
        if coord.poll() is None:
            coord.kill()
        coord.wait()
    records = history(out)
    durations = [float(r["duration_s"]) for r in records]
    join_s = [t for o in outs for t in o.get("join_s", [])]
    errors = [e for o in outs for e in o.get("errors", [])]
    stall = next((o["stallers"] for o in outs if "stallers" in o), {})
    later = durations[1:]
    before = durations[1:stall_from] or durations[:stall_from]
    # the rounds that started with every stalled stream open
    during = [] if stalled_after is None else durations[stalled_after + 1:]
    cpu = [b - a for a, b in itertools.pairwise(cpu_marks)]  # rounds 2.. (sampled every 0.2 s)
    cpu_before = cpu[:max(0, stall_from - 1)]
    cpu_during = [] if stalled_after is None else cpu[stalled_after:]
    return {
        "clients": clients, "rounds": rounds, "procs": procs, "params": params,
        "rounds_ok": sum(r["status"] == "ok" for r in records),
        "results_per_round": [int(r["results_received"]) for r in records],
        "clients_finished": sum(int(o.get("finished", 0)) for o in outs),
        "client_errors": len(errors), "first_errors": errors[:3],
        "join_p50_s": round(_pct(join_s, 0.50), 4), "join_p99_s": round(_pct(join_s, 0.99), 4),
        "round_s": [round(d, 3) for d in durations],
        "round_s_median": round(statistics.median(later or durations), 3),
        "round_s_max": round(max(later or durations), 3),
        "round_s_without_stallers": round(statistics.median(before), 3) if before else None,
        "round_s_with_stallers": round(statistics.median(during), 3) if during else None,
        "rounds_with_stallers": len(during),
        "coord_cpu_round_s_without_stallers": (round(statistics.median(cpu_before), 2)
                                               if cpu_before else None),
        "coord_cpu_round_s_with_stallers": (round(statistics.median(cpu_during), 2)
                                            if cpu_during else None),
        "stalled_streams": stall.get("streams", 0),
        "stalls_ended_by_server": stall.get("ended_by_server", {}),
        "coord_rss_mb": round(stats.rss_mb, 1), "coord_rss_peak_sampled_mb": round(peak_rss, 1),
        "coord_hwm_mb": round(stats.hwm_mb, 1), "coord_cpu_s": round(stats.cpu_s, 2),
        "coord_cpu_per_round_s": round(stats.cpu_s / max(1, len(records)), 2),
        "coord_exit": coord.returncode, "load_avg_1m": round(load_avg, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--procs", type=int, default=4, help="client worker processes")
    p.add_argument("--params", type=int, default=1000, help="float32 parameters in the model")
    p.add_argument("--stallers", type=int, default=100,
                   help="connections holding stalled upload streams (two streams each)")
    p.add_argument("--stall-from", type=int, help="open the stalled streams once this many "
                   "rounds are recorded (default: half; 0: before the clients start)")
    p.add_argument("--upload-idle-s", type=float, default=5.0,
                   help="the coordinator's [limits] upload_idle_s (0: its default)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, help="coordinator output directory (default: temporary)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.clients, args.rounds, args.procs, args.params, args.stallers,
                     args.out or Path(tmp) / "coordinator", stall_from=args.stall_from,
                     upload_idle_s=args.upload_idle_s or None, timeout_s=args.timeout)
    print(json.dumps(result))
    return 0 if result["rounds_ok"] == args.rounds and not result["client_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
