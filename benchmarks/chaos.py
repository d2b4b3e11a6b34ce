"""Chaos: secure-aggregation rounds over real gRPC while clients die, stall and lie, and the
coordinator is SIGKILLed and resumed; every round completes with exactly the survivors' sum
or aborts cleanly, and no completed round is lost.

`python -m benchmarks.chaos [--clients 10] [--rounds 12] [--faults-per-round 3]
[--coordinator-kills 2] [--mass-dropouts 1] [--seed 0] [--out DIR]` prints one JSON line.

Set-up: a `fedcore server` process (`[secagg] enabled`, full mode, `phase_timeout_s` 2 s,
checkpoints in `--out`) and one SDK client process per client (`run_client`). The model is
one float32 vector of clients x rounds entries; in round r client i adds exactly 1.0 to entry
(r - 1) * clients + i and nothing else. Every weight is 1 (`weight_cap` 1, one example), so
after a completed round r that round's slot of the model is 1/|S| at the entries of the
clients S whose masked inputs were aggregated and 0 elsewhere: the final model says, round by
round, whose updates were summed.

Faults, drawn from `--seed` (at most `--faults-per-round` distinct clients per round, so that
the threshold can still be met):
- die: the client process ends abruptly (`os._exit`) in local training (before advertising
  keys), or on the key list (before sharing), the share relay (before masking) or the unmask
  request (after its masked input was taken); the harness starts it again at once, same id;
- stall: the client sleeps past the phase deadline in training, on the key list or on the
  share relay;
- malformed: a thread sends bytes that are no request to every RPC, a result with forged
  credentials and a join with an over-long id, all the while (each must get a status code other
  than UNKNOWN or INTERNAL: `malformed_unexpected_codes` must stay empty);
- mass dropout: in `--mass-dropouts` rounds, one client more than the threshold t =
  ceil(2/3 n) allows to lose dies on the share relay, so the round cannot complete;
- coordinator: SIGKILL a moment after round k completed (k spread over the run), then start
  it again with `--resume`; clients reconnect by themselves.

Checks, per round, against a plaintext replay: a completed round's slot is exactly
sum(e_i for i in S) / |S| with |S| the round's `results_received`; S holds every client that
was asked to unmask (its masked input was taken) and no client that died or stalled before
masking, nor any client that did not train in the attempt the coordinator completed; an
aborted round left its slot zero (within 1e-6: later rounds' dequantised zeros may
leave ~1e-16 there). `rounds_lost` counts rounds some coordinator had
recorded as completed (`history.json` right after each SIGKILL) that the final run lacks or
recomputed: it must be 0, as must `mismatches`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STEP_NAMES = {0: "training", 1: "key list", 2: "share relay", 3: "unmask request"}
PHASE_TIMEOUT_S = 2.0
STALL_S = PHASE_TIMEOUT_S + 1.5
DIED = 3  # exit status of a client the harness killed


# ----------------------------------------------------------------------------- client process
def client_main(address: str, client_id: str, index: int, width: int, plan_json: str,
                log_path: str) -> int:
    """A client process: adds 1.0 at its entry of the round's slot; acts out `plan` (round ->
    [action, step]) and logs every task it sees (JSON lines: time, round, step, event)."""
    from fedcore.client import EvalResult, FitResult, run_client
    from fedcore.client.events import Callbacks, Selected
    from fedcore.protocol.messages import TaskKind

    plan = {int(r): (a, int(s)) for r, (a, s) in json.loads(plan_json).items()}
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    state = {"round": 0, "step": 0}

    def note(event: str) -> None:
        log.write(json.dumps({"t": time.time(), "round": state["round"], "step": state["step"],
                              "event": event}) + "\n")

    def act() -> None:
        action = plan.get(state["round"])
        if action is None or action[1] != state["step"]:
            return
        del plan[state["round"]]  # once: a re-run of the round after a coordinator restart is clean
        note(action[0])
        if action[0] == "die":
            log.flush()
            os._exit(DIED)
        time.sleep(STALL_S)

    class OneHot:
        def get_parameters(self) -> dict[str, np.ndarray]:
            return {"w": np.zeros(width, np.float32)}

        def fit(self, params: dict[str, np.ndarray], config: object) -> FitResult:
            act()
            w = params["w"].copy()
            w[(state["round"] - 1) * (width // rounds) + index] += np.float32(1.0)
            return FitResult(params={"w": w}, num_examples=1, metrics={})

        def evaluate(self, params: dict[str, np.ndarray], config: object) -> EvalResult:
            return EvalResult(loss=0.0, num_examples=1)

    rounds = int(os.environ["CHAOS_ROUNDS"])

    def on_selected(event: Selected) -> None:
        if event.kind is TaskKind.TRAIN:
            state["round"], state["step"] = event.round, 0
            note("train")
        elif event.kind is TaskKind.SECAGG and event.round == state["round"]:
            state["step"] += 1
            note("step")
            act()

    summary = run_client(OneHot(), address, client_id=client_id, max_reconnect_s=120.0,
                         callbacks=Callbacks(on_selected=on_selected))
    note("finished" if summary.finished else f"ended: {summary.last_error}")
    return 0


# ----------------------------------------------------------------------------- faults
def plan_faults(clients: int, rounds: int, per_round: int, seed: int,
                mass_rounds: tuple[int, ...] = ()) -> dict[int, dict[int, tuple[str, int]]]:
    """client -> round -> (action, step): `per_round` distinct clients per round, kinds in turn
    so that every (action, step) pair comes up; in `mass_rounds`, one client more than the
    threshold allows to lose dies on the share relay (before masking) instead."""
    kinds = [("die", 0), ("die", 1), ("die", 2), ("die", 3), ("stall", 0), ("stall", 1),
             ("stall", 2)]
    rng = random.Random(seed)
    plans: dict[int, dict[int, tuple[str, int]]] = {i: {} for i in range(clients)}
    turn = rng.randrange(len(kinds))
    for r in range(1, rounds + 1):
        if r in mass_rounds:
            for i in rng.sample(range(clients), clients - math.ceil(clients * 2 / 3) + 1):
                plans[i][r] = ("die", 2)
            continue
        for i in rng.sample(range(clients), per_round):
            plans[i][r] = kinds[turn % len(kinds)]
            turn += 1
    return plans


# ----------------------------------------------------------------------------- malformed
@dataclass(slots=True)
class Hostile:
    """Counts of what the malformed-message thread sent and what it got back."""

    sent: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


def hostile_loop(address: str, stop: threading.Event, out: Hostile, seed: int) -> None:
    """Send malformed requests to every RPC until `stop` (skipping while the coordinator is down)."""
    import grpc

    from fedcore.proto.v1 import coordinator_pb2 as pb

    rng = random.Random(seed)
    ident = (lambda b: b)
    forged = pb.ResultChunk(header=pb.ResultHeader(
        credentials=pb.Credentials(client_id="c000", session=b"\x00" * 16), task_id="t1-train-r1",
        num_examples=1)).SerializeToString()
    long_id = pb.JoinRequest(client_id="x" * 100_000, protocol_version=1).SerializeToString()
    # reconnect quickly after the coordinator restarts (gRPC's default backoff grows to 2 min)
    options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
               ("grpc.max_reconnect_backoff_ms", 500)]
    with grpc.insecure_channel(address, options=options) as channel:
        calls = {
            "Join": channel.unary_unary("/fedcore.v1.Coordinator/Join", ident, ident),
            "GetTask": channel.unary_unary("/fedcore.v1.Coordinator/GetTask", ident, ident),
            "DownloadModel": channel.unary_stream("/fedcore.v1.Coordinator/DownloadModel", ident, ident),
            "SubmitResult": channel.stream_unary("/fedcore.v1.Coordinator/SubmitResult", ident, ident),
            "Leave": channel.unary_unary("/fedcore.v1.Coordinator/Leave", ident, ident),
        }
        while not stop.wait(0.25):
            method = rng.choice(sorted(calls))
            kind = "garbage"
            payload = b"\xff\xff\xff\xff\x0f" + rng.randbytes(rng.randrange(64))
            if method == "SubmitResult" and rng.random() < 0.5:
                kind, payload = "forged_result", forged
            elif method == "Join" and rng.random() < 0.5:
                kind, payload = "oversized_join", long_id
            try:  # wait_for_ready: while the coordinator is down the call waits for it
                if method == "SubmitResult":
                    calls[method](iter([payload]), timeout=2, wait_for_ready=True)
                elif method == "DownloadModel":
                    list(calls[method](payload, timeout=2, wait_for_ready=True))
                else:
                    calls[method](payload, timeout=2, wait_for_ready=True)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
            if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                continue  # the coordinator is down (killed) or restarting: nothing was tested
            out.sent[kind] += 1
            out.codes[code] += 1
            if code in ("UNKNOWN", "INTERNAL", "OK"):
                out.unexpected.append(f"{method}/{kind}: {code}")


# ----------------------------------------------------------------------------- harness
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _history(out: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((out / "history.json").read_text())["rounds"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


@dataclass(slots=True)
class Incarnation:
    """One coordinator process: when it ran, and the rounds history.json had when it ended."""

    started: float
    ended: float = float("inf")
    rounds: list[dict[str, Any]] = field(default_factory=list)


def run(clients: int, rounds: int, per_round: int, kills: int, seed: int, out: Path,
        timeout_s: float = 600.0, mass_dropouts: int = 0) -> dict[str, Any]:
    """Run the chaos and check it; returns the figures (see the module docstring)."""
    from fedcore.storage.checkpoints import load_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    logs = out / "clients"
    logs.mkdir(exist_ok=True)
    width = clients * rounds
    np.savez(out / "initial.npz", w=np.zeros(width, np.float32))
    (out / "chaos.toml").write_text(
        "[rounds]\neval_fraction = 0.0\n\n"
        f"[secagg]\nenabled = true\nmode = \"full\"\nclip = 2.0\nweight_cap = 1.0\n"
        f"phase_timeout_s = {PHASE_TIMEOUT_S}\n")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    server_cmd = [sys.executable, "-m", "fedcore.cli", "server", "--config",
                  str(out / "chaos.toml"), "--address", address, "--out", str(out / "run"),
                  "--rounds", str(rounds), "--min-clients", str(clients),
                  "--clients-per-round", str(clients), "--min-results", "2",
                  "--round-timeout", "60", "--initial-model", str(out / "initial.npz")]
    coord_log = (out / "coordinator.log").open("ab")
    env = {**os.environ, "CHAOS_ROUNDS": str(rounds)}
    mass_rounds = tuple(sorted(random.Random(seed + 2).sample(range(2, rounds + 1),
                                                                 min(mass_dropouts, rounds - 1))))
    plans = plan_faults(clients, rounds, per_round, seed, mass_rounds)
    kill_after = sorted(random.Random(seed + 1).sample(range(1, rounds), min(kills, rounds - 1)))

    def start_coordinator(resume: bool) -> subprocess.Popen[bytes]:
        return subprocess.Popen(server_cmd + (["--resume"] if resume else []),
                                stdout=coord_log, stderr=subprocess.STDOUT)

    def start_client(i: int, after_round: int) -> subprocess.Popen[bytes]:
        plan = {r: a for r, a in plans[i].items() if r > after_round}
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.chaos", "client", address, f"c{i:03d}", str(i),
             str(width), json.dumps(plan), str(logs / f"c{i:03d}.jsonl")],
            stdout=subprocess.DEVNULL, stderr=(logs / f"c{i:03d}.err").open("ab"), env=env)

    started = time.monotonic()
    load_avg = os.getloadavg()[0]
    coord = start_coordinator(resume=False)
    incarnations = [Incarnation(started=time.time())]
    procs = {i: start_client(i, 0) for i in range(clients)}
    hostile, stop = Hostile(), threading.Event()
    thread = threading.Thread(target=hostile_loop, args=(address, stop, hostile, seed), daemon=True)
    thread.start()
    restarts, kills_done, killed_at = 0, 0, list(kill_after)
    try:
        while coord.poll() is None:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the run did not finish in {timeout_s}s")
            recorded = len(_history(out / "run"))
            if recorded >= rounds:
                stop.set()  # the malformed requests end with the last round, not the process
            for i, proc in procs.items():  # a client the harness killed comes back at once
                if proc.poll() == DIED:
                    procs[i] = start_client(i, after_round=recorded + 1)
                    restarts += 1
            if killed_at and recorded >= killed_at[0]:
                killed_at.pop(0)
                time.sleep(random.Random(seed + recorded).uniform(0.2, 1.5))  # into the next round
                if coord.poll() is None:
                    coord.send_signal(signal.SIGKILL)
                    coord.wait()
                    incarnations[-1].ended = time.time()
                    incarnations[-1].rounds = _history(out / "run")
                    kills_done += 1
                    coord = start_coordinator(resume=True)
                    incarnations.append(Incarnation(started=time.time()))
            time.sleep(0.1)
        incarnations[-1].ended = time.time()
        incarnations[-1].rounds = _history(out / "run")
    finally:
        stop.set()
        if coord.poll() is None:
            coord.kill()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        thread.join(10)
        coord_log.close()
    snapshot = load_checkpoint(out / "run")
    model = snapshot.params["w"] if snapshot is not None else np.zeros(width, np.float32)
    verdict = check(model, incarnations, logs, clients, rounds)
    faults = Counter(f"{e['event']}@{STEP_NAMES[e['step']]}" for evs in _events(logs).values()
                     for e in evs if e["event"] in ("die", "stall"))
    injected = dict(sorted(faults.items()))
    injected.update({f"malformed:{k}": v for k, v in sorted(hostile.sent.items())})
    injected["coordinator_sigkill"] = kills_done
    return {
        "clients": clients, "rounds": rounds, "seed": seed, "coord_exit": coord.returncode,
        "rounds_completed": verdict["completed"], "rounds_aborted": verdict["aborted"],
        "rounds_lost": verdict["lost"], "mismatches": verdict["mismatches"],
        "survivors_per_round": verdict["survivors"], "mass_dropout_rounds": list(mass_rounds),
        "faults_injected": injected, "faults_total": sum(injected.values()),
        "client_restarts": restarts,
        "malformed_codes": dict(hostile.codes), "malformed_unexpected_codes": hostile.unexpected[:5],
        "seconds": round(time.monotonic() - started, 1), "load_avg_1m": round(load_avg, 2),
    }


def _events(logs: Path) -> dict[int, list[dict[str, Any]]]:
    """client index -> its logged events."""
    out: dict[int, list[dict[str, Any]]] = {}
    for path in logs.glob("c*.jsonl"):
        out[int(path.stem[1:])] = [json.loads(line) for line in path.read_text().splitlines()
                                   if line.strip()]
    return out


def _last_attempt(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events from a client's last training task on (a client that died and came back
    under the same id may be offered the round's task again)."""
    starts = [k for k, e in enumerate(events) if e["event"] == "train"]
    return events[starts[-1]:] if starts else events


def check(model: np.ndarray, incarnations: list[Incarnation], logs: Path, clients: int,
          rounds: int) -> dict[str, Any]:
    """Each round's slot of `model` against the clients' logs (see the module docstring)."""
    final = {int(r["round"]): r for r in incarnations[-1].rounds}
    mismatches: list[str] = []
    # rounds lost: completed in some coordinator's history, absent or different at the end
    lost = 0
    for inc in incarnations[:-1]:
        for rec in inc.rounds:
            end = final.get(int(rec["round"]))
            if rec["status"] == "ok" and (end is None or end != rec):
                lost += 1
                mismatches.append(f"round {rec['round']} completed, then lost or redone")
    events = _events(logs)
    survivors: list[int | None] = []
    completed = aborted = 0
    for r in range(1, rounds + 1):
        slot = model[(r - 1) * clients : r * clients]
        rec = final.get(r)
        if rec is None:
            mismatches.append(f"round {r} has no record")
            survivors.append(None)
            continue
        if rec["status"] != "ok":
            aborted += 1
            survivors.append(None)
            # (later rounds' dequantised zeros may leave ~1e-16 there, far below one 1/n)
            if np.any(np.abs(slot) > 1e-6):
                mismatches.append(f"round {r} aborted but changed the model: {slot.tolist()}")
            continue
        completed += 1
        # the window of the coordinator that completed round r
        inc = next(i for i in incarnations if any(int(x["round"]) == r for x in i.rounds))
        seen = {i: _last_attempt([e for e in evs if e["round"] == r
                                  and inc.started <= e["t"] < inc.ended])
                for i, evs in events.items()}
        members = {i for i in range(clients) if slot[i] > 1e-6}  # summed: 1/|S| >= 1/clients
        survivors.append(len(members))
        expected = np.zeros(clients)
        if members:
            expected[sorted(members)] = 1.0 / len(members)  # the plaintext replay
        if not np.allclose(slot, expected, atol=1e-5, rtol=0):
            mismatches.append(f"round {r}: slot {slot.tolist()} is not the mean of {members}")
        if len(members) != int(rec["results_received"]):
            mismatches.append(f"round {r}: {len(members)} summed, {rec['results_received']} "
                              "results recorded")
        trained = {i for i, evs in seen.items() if any(e["event"] == "train" for e in evs)}
        unmasked = {i for i, evs in seen.items()
                    if any(e["event"] == "step" and e["step"] == 3 for e in evs)}
        dropped = {i for i, evs in seen.items()
                   if any(e["event"] in ("die", "stall") and e["step"] < 3 for e in evs)}
        if not members <= trained:
            mismatches.append(f"round {r}: summed {sorted(members - trained)} who did not train")
        if not unmasked <= members:
            mismatches.append(f"round {r}: {sorted(unmasked - members)} were asked to unmask "
                              "but are not in the sum")
        if members & dropped:
            mismatches.append(f"round {r}: summed {sorted(members & dropped)} who dropped")
    return {"completed": completed, "aborted": aborted, "lost": lost,
            "mismatches": mismatches[:10], "survivors": survivors}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        address, client_id, index, width, plan, log = argv[1:7]
        return client_main(address, client_id, int(index), int(width), plan, log)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--faults-per-round", type=int, default=3)
    p.add_argument("--coordinator-kills", type=int, default=2)
    p.add_argument("--mass-dropouts", type=int, default=1,
                   help="rounds in which more clients die before masking than the threshold "
                   "allows (such a round must abort)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, help="working directory (default: temporary)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.clients, args.rounds, args.faults_per_round, args.coordinator_kills,
                     args.seed, args.out or Path(tmp), args.timeout, args.mass_dropouts)
    print(json.dumps(result))
    ok = not result["rounds_lost"] and not result["mismatches"] and not result[
        "malformed_unexpected_codes"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
