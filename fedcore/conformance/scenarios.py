"""The conformance kit's scripted scenarios, each checking numbered requirements of
docs/protocol.md against the client under test (section "Conformance" lists them).

Each scenario takes a `Harness`, starts a coordinator (and, where the scenario needs them, the
kit's own clients), launches the client under test, drives the run and returns one `Outcome`
per requirement it checked. The client under test behaves as `reference_client` describes:
it adds `{add}` to every floating-point element, reports `{examples}` examples, has no initial
parameters of its own.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcore.conformance.harness import ClientProcess, Harness, copy_params, wait_for
from fedcore.conformance.observe import RecordingEngine, Submitted
from fedcore.engine.config import EngineConfig, SecureAggregationConfig, SelectionConfig
from fedcore.engine.engine import Phase
from fedcore.protocol.messages import TaskKind
from fedcore.protocol.params import Array
from fedcore.transport.grpc.server import CoordinatorServer

HINT_SLACK_S = 0.05  # clock and scheduling slack when checking that a hint was waited out
HELD_WINDOW_S = 2.0  # how long the waiting scenario watches held GetTasks ...
UNHELD_WINDOW_S = 2.5  # ... and then unheld ones


@dataclass(frozen=True, slots=True)
class Requirement:
    """A requirement of docs/protocol.md: `section` numbers the sections it comes from."""

    id: str
    section: str
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """Whether the client under test met `requirement` in `scenario`, and what was seen."""

    scenario: str
    requirement: Requirement
    passed: bool
    detail: str


REQUIREMENTS = {r.id: r for r in (
    Requirement("join", "3.1, 2",
                "joins with protocol_version 1, its client id and the token, then sends its "
                "session in every request"),
    Requirement("train-update", "4, 5.1, 5.2, 5.3",
                "a TRAIN result has the task's model_spec and the update local - global in each "
                "tensor's dtype, bit for bit, with the configured num_examples"),
    Requirement("evaluate", "4",
                "an EVALUATE result has an empty spec, no payload and a finite `loss` metric"),
    Requirement("done", "2, 3.2, 3.5", "on Done it Leaves and stops"),
    Requirement("long-poll", "2, 3.2",
                "while GetTask is held (long-poll) it makes at most one call per hold: no busy "
                "loop"),
    Requirement("wait-hint", "2, 3.2",
                "after a Wait that was not held it waits retry_after_s before its next GetTask"),
    Requirement("init-decline", "4.2, 3.4",
                "without initial parameters it declines INITIALIZE: a declined_reason, no "
                "payload, not permanent, no download"),
    Requirement("decline-hint", "3.4, 4.1",
                "after a decline it waits SubmitReply.retry_after_s before its next GetTask"),
    Requirement("late-result", "4.4, 6",
                "a result refused with FAILED_PRECONDITION (the task closed) is dropped, not "
                "sent again; the client polls again and takes part in the next round"),
    Requirement("restart-unavailable", "6",
                "while the coordinator is down (UNAVAILABLE) it backs off and keeps trying; it "
                "does not stop"),
    Requirement("restart-rejoin", "3.1, 6",
                "it joins a restarted coordinator, and when a request is refused with NOT_FOUND "
                "(the coordinator forgot it) it joins again within a few calls and goes on"),
    Requirement("secure-round", "8",
                "it completes an unsigned secure round (keys, shares, masked input, unmasking) "
                "in which other clients drop out at every phase, and the sum includes its "
                "update"),
)}

Scenario = Callable[[Harness], list[Outcome]]


class _Checks:
    """Collects a scenario's outcomes."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.outcomes: list[Outcome] = []

    def add(self, requirement: str, passed: bool, detail: str = "") -> None:
        self.outcomes.append(Outcome(self.scenario, REQUIREMENTS[requirement], passed,
                                     detail or ("ok" if passed else "failed")))

    def missing(self, requirements: list[str], why: str) -> list[Outcome]:
        """Fail every requirement of `requirements` not yet checked, with `why`."""
        done = {o.requirement.id for o in self.outcomes}
        for requirement in requirements:
            if requirement not in done:
                self.add(requirement, False, why)
        return self.outcomes


def plain_model() -> dict[str, Array]:
    """The plain scenarios' model: values whose sums round, three dtypes."""
    return {
        "w": (np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.37) - np.float32(1)),
        "b": np.array([0.1, -2.5, 3.3], np.float64),
        "n": np.array([7, -3], np.int32),
    }


def expected_update(global_params: dict[str, Array], add: float) -> dict[str, Array]:
    """What a conforming client sends: (global + add) - global in each floating dtype, zero
    in the others."""
    out = {}
    for name, g in global_params.items():
        if np.issubdtype(g.dtype, np.floating):
            local: Any = g + np.asarray(add, g.dtype)
            out[name] = local - g
        else:
            out[name] = np.zeros_like(g)
    return out


def update_error(sub: Submitted, add: float, examples: int) -> str | None:
    """Why `sub` is not what a conforming client sends (None when it is, bit for bit)."""
    if sub.global_params is None:
        return "no global model recorded for the task"
    if sub.header.num_examples != examples:
        return f"num_examples is {sub.header.num_examples}, the client was told {examples}"
    if list(sub.tensors) != list(sub.global_params):
        return f"tensors {list(sub.tensors)}, the model has {list(sub.global_params)}"
    for name, want in expected_update(sub.global_params, add).items():
        got = sub.tensors[name]
        if got.dtype != want.dtype or got.shape != want.shape:
            return f"{name}: {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
        if got.tobytes() != want.tobytes():
            bad = np.flatnonzero(got.reshape(-1).view(np.uint8 if got.itemsize == 1 else
                                                      f"u{got.itemsize}")
                                 != want.reshape(-1).view(np.uint8 if want.itemsize == 1 else
                                                          f"u{want.itemsize}"))
            i = int(bad[0])
            return (f"{name}: {bad.size} of {want.size} elements differ; element {i} is "
                    f"{got.reshape(-1)[i]!r}, expected {want.reshape(-1)[i]!r}")
    return None


def _train_results(engine: RecordingEngine, client_id: str) -> list[Submitted]:
    return [s for s in engine.submitted if s.header.client_id == client_id
            and s.kind is TaskKind.TRAIN and not s.header.declined_reason]


def _check_updates(checks: _Checks, engine: RecordingEngine, client_id: str, add: float,
                   examples: int, rounds: set[int]) -> None:
    results = _train_results(engine, client_id)
    seen = {s.round for s in results}
    errors = [f"round {s.round}: {e}" for s in results if (e := update_error(s, add, examples))]
    refused = [r.reason for r in engine.refusals if r.client_id == client_id]
    if not rounds <= seen:
        detail = f"no accepted TRAIN result in round(s) {sorted(rounds - seen)}"
        checks.add("train-update", False, detail + (f"; refused: {refused[:2]}" if refused else ""))
    elif errors:
        checks.add("train-update", False, "; ".join(errors[:2]))
    else:
        checks.add("train-update", True, f"exact in round(s) {sorted(seen)}")


def _check_join(checks: _Checks, engine: RecordingEngine, client_id: str) -> None:
    joins = engine.calls(client_id, "Join")
    polls = engine.calls(client_id, "GetTask")
    refused = engine.calls(client_id, "refused")
    if not joins:
        checks.add("join", False, "no Join with the client id the kit gave reached the "
                   "engine (a wrong token is refused before it, with UNAUTHENTICATED)")
    elif not polls:
        checks.add("join", False, f"{len(joins)} Join(s) but no authenticated GetTask"
                   + (f" ({refused[0].reason})" if refused else ""))
    elif refused:
        checks.add("join", False, f"{len(refused)} request(s) with refused credentials: "
                   f"{refused[0].reason}")
    else:
        checks.add("join", True, f"{len(joins)} Join, {len(polls)} GetTask")


def _check_done(checks: _Checks, engine: RecordingEngine, client: ClientProcess) -> None:
    code = client.wait(20.0)
    cid = checks_client(checks)
    last = max((s.at for s in engine.submitted if s.header.client_id == cid), default=0.0)
    leaves = engine.calls(cid, "Leave", since=last)
    if code is None:
        checks.add("done", False, "still running 20 s after the run ended")
    elif not leaves:
        checks.add("done", False, f"stopped (exit {code}) without calling Leave")
    else:
        checks.add("done", True, f"Leave, then exit {code}")


def checks_client(checks: _Checks) -> str:
    """The client id the kit gives the client under test in a scenario."""
    return f"conformance-{checks.scenario}"


def _until(client: ClientProcess, predicate: Callable[[], bool], timeout: float,
           what: str) -> str | None:
    """None once `predicate` holds; else why not: the client exited first, or `timeout`."""
    end = time.monotonic() + timeout
    while not predicate():
        if not client.running() and not predicate():
            return (f"{what}: the client exited with status {client.proc.returncode} "
                    f"(see {client.log_path})")
        if time.monotonic() > end:
            return f"{what}: not within {timeout:g} s (see {client.log_path})"
        time.sleep(0.05)
    return None


def _finish(engine: RecordingEngine, server: CoordinatorServer, client: ClientProcess,
            timeout: float, what: str = "the run did not finish") -> str | None:
    """None once the run is done and `server` has stopped; else why not."""
    why = _until(client, lambda: engine.phase is Phase.DONE, timeout, what)
    if why is None and not server.wait(10.0):
        return f"{what}: the coordinator did not stop"
    return why


# ------------------------------------------------------------------------------ scenarios
def plain(h: Harness) -> list[Outcome]:
    """Two rounds of FedAvg, each with an evaluation, the model downloaded in 16-byte chunks;
    the run's end."""
    checks = _Checks("plain")
    cid, add, examples = checks_client(checks), 0.1, 7
    config = EngineConfig(num_rounds=2, train=SelectionConfig(count=1), round_timeout_s=20.0,
                          eval_timeout_s=20.0, chunk_bytes=16)  # the 56-byte model in 4 chunks
    engine = h.engine(config, plain_model())
    server = h.serve(engine)
    client = h.launch(server, cid, add=add, examples=examples)
    if why := _finish(engine, server, client, 40.0):
        _check_join(checks, engine, cid)
        return checks.missing(["train-update", "evaluate", "done"], why)
    _check_join(checks, engine, cid)
    _check_updates(checks, engine, cid, add, examples, {1, 2})
    evals = [s for s in engine.submitted if s.header.client_id == cid
             and s.kind is TaskKind.EVALUATE]
    bad = [s for s in evals if s.tensors or len(s.header.spec.tensors)
           or not math.isfinite(s.header.metrics.get("loss", math.nan))]
    checks.add("evaluate", bool(evals) and not bad,
               f"{len(evals)} EVALUATE result(s)" if evals and not bad else
               "no EVALUATE result" if not evals else
               f"round {bad[0].round}: spec {bad[0].header.spec}, metrics {bad[0].header.metrics}")
    _check_done(checks, engine, client)
    return checks.outcomes


def waiting(h: Harness) -> list[Outcome]:
    """No work for a while: held GetTasks, then unheld Waits; then a round with a helper."""
    checks = _Checks("waiting")
    cid, add, examples = checks_client(checks), 0.25, 3
    config = EngineConfig(num_rounds=1, evaluate=None, retry_after_s=1.0, round_timeout_s=20.0,
                          train=SelectionConfig(fraction=1.0, min_available=2))
    engine = h.engine(config, plain_model())
    server = h.serve(engine, long_poll_s=1.0)
    client = h.launch(server, cid, add=add, examples=examples)
    if why := _until(client, lambda: bool(engine.calls(cid, "GetTask")), 20.0, "no GetTask"):
        _check_join(checks, engine, cid)
        return checks.missing(["long-poll", "wait-hint", "train-update"], why)
    _check_join(checks, engine, cid)
    held_from = engine.calls(cid, "GetTask")[0].at
    time.sleep(HELD_WINDOW_S)
    held = engine.calls(cid, "GetTask", since=held_from, until=held_from + HELD_WINDOW_S)
    most = int(HELD_WINDOW_S) + 2  # one call per 1 s hold, and the edges
    checks.add("long-poll", len(held) <= most,
               f"{len(held)} GetTask calls in {HELD_WINDOW_S:g} s of 1 s holds (at most {most} "
               "allowed)")
    assert server.service is not None
    server.service.long_poll_s = 0.0  # from now on every Wait says retry_after_s = 1
    unheld_from = time.monotonic()
    time.sleep(UNHELD_WINDOW_S)
    polls = engine.calls(cid, "GetTask", since=unheld_from)
    gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
    short = [g for g in gaps if g < config.retry_after_s - HINT_SLACK_S]
    checks.add("wait-hint", bool(polls) and not short,
               f"{len(polls)} GetTask calls in {UNHELD_WINDOW_S:g} s of Wait(retry_after_s=1)"
               + (f"; {len(short)} came after only {min(short):.3f} s" if short else ""))
    server.service.long_poll_s = 1.0
    h.helper(server, "kit-helper-waiting", add=0.5, examples=5)
    if why := _finish(engine, server, client, 30.0, "the round with a kit client did not finish"):
        return checks.missing(["train-update"], why)
    _check_updates(checks, engine, cid, add, examples, {1})
    return checks.outcomes


def decline(h: Harness) -> list[Outcome]:
    """The first model comes from a client: the client under test has none and must decline;
    then a helper offers one and a round runs with both."""
    checks = _Checks("decline")
    cid, add, examples = checks_client(checks), -0.75, 4
    config = EngineConfig(num_rounds=1, evaluate=None, retry_after_s=1.0, round_timeout_s=20.0,
                          train=SelectionConfig(fraction=1.0, min_available=2))
    engine = h.engine(config, None)
    server = h.serve(engine)
    client = h.launch(server, cid, add=add, examples=examples)

    def declines() -> list[Submitted]:
        return [s for s in engine.submitted if s.header.client_id == cid
                and s.kind is TaskKind.INITIALIZE]

    if why := _until(client, lambda: len(declines()) >= 2, 25.0,
                     "fewer than 2 answers to INITIALIZE"):
        _check_join(checks, engine, cid)
        return checks.missing(["init-decline", "decline-hint", "train-update"], why)
    _check_join(checks, engine, cid)
    time.sleep(0.3)  # let the poll after the second hint arrive
    answers = declines()
    bad = [s for s in answers if not s.header.declined_reason or s.tensors or s.header.permanent]
    downloads = engine.calls(cid, "DownloadModel")
    checks.add("init-decline", not bad and not downloads,
               f"{len(answers)} declines ({answers[0].header.declined_reason!r})" if not bad
               and not downloads else
               f"{len(downloads)} download(s) for INITIALIZE" if downloads else
               f"answered INITIALIZE with {len(bad[0].tensors)} tensors, "
               f"declined_reason={bad[0].header.declined_reason!r}, "
               f"permanent={bad[0].header.permanent}")
    early = []
    for answer in answers:
        later = engine.calls(cid, "GetTask", since=answer.at)
        if later and later[0].at - answer.at < answer.retry_after_s - HINT_SLACK_S:
            early.append(f"polled {later[0].at - answer.at:.3f} s after a decline told to wait "
                         f"{answer.retry_after_s:.3f} s")
    checks.add("decline-hint", not early and all(a.retry_after_s > 0 for a in answers),
               "; ".join(early) if early else
               "waited " + ", ".join(f"{a.retry_after_s:.2f} s" for a in answers))
    h.helper(server, "kit-helper-decline", add=0.5, examples=5, initial=plain_model())
    if why := _finish(engine, server, client, 30.0,
                      "the round after a kit client's initial model did not finish"):
        return checks.missing(["train-update"], why)
    _check_updates(checks, engine, cid, add, examples, {1})
    return checks.outcomes


def late(h: Harness) -> list[Outcome]:
    """The client's round-1 result arrives just after the deadline; round 2 follows."""
    checks = _Checks("late")
    cid, add, examples = checks_client(checks), 0.125, 9
    config = EngineConfig(num_rounds=2, evaluate=None, round_timeout_s=20.0,
                          train=SelectionConfig(count=1))
    engine = h.engine(config, plain_model())
    engine.make_late(cid)
    server = h.serve(engine)
    client = h.launch(server, cid, add=add, examples=examples)
    if why := _finish(engine, server, client, 40.0):
        _check_join(checks, engine, cid)
        return checks.missing(["late-result", "train-update"],
                              why + ("" if engine.made_late else
                                     " (no result arrived to be made late)"))
    _check_join(checks, engine, cid)
    late_tasks = engine.made_late
    resent = [r for r in engine.refusals if r.task_id in late_tasks]
    ok_round2 = any(s.round == 2 for s in _train_results(engine, cid))
    checks.add("late-result", len(resent) == 1 and ok_round2,
               "refused once, then took part in round 2" if len(resent) == 1 and ok_round2 else
               f"the late task was sent {len(resent)} times" if len(resent) != 1 else
               "no result in round 2 after the refusal")
    _check_updates(checks, engine, cid, add, examples, {2})
    return checks.outcomes


def restart(h: Harness) -> list[Outcome]:
    """Round 1, the coordinator stops, a new one resumes from round 1's checkpoint."""
    checks = _Checks("restart")
    cid, add, examples = checks_client(checks), 0.2, 6
    config = EngineConfig(num_rounds=2, evaluate=None, round_timeout_s=20.0,
                          train=SelectionConfig(count=1))
    first = h.engine(config, plain_model())
    first.hold_after(1)  # the coordinator goes down at the boundary after round 1
    server = h.serve(first)
    port = server.port
    client = h.launch(server, cid, add=add, examples=examples)
    if why := _until(client, lambda: first.snapshot() is not None and bool(
            first.calls(cid, "GetTask", since=first.submitted[-1].at)), 30.0,
            "round 1 did not complete"):
        _check_join(checks, first, cid)
        return checks.missing(["train-update", "restart-unavailable", "restart-rejoin"], why)
    _check_join(checks, first, cid)
    snapshot = first.snapshot()
    assert snapshot is not None
    server.stop()
    time.sleep(1.5)  # down: every call fails with UNAVAILABLE
    second = h.restored(config, snapshot)
    second.forget(cid)  # its first request after joining: NOT_FOUND
    server = h.serve(second, port=port)
    alive = wait_for(lambda: bool(second.calls(cid)) or not client.running(), 20.0)
    reached = bool(second.calls(cid))
    checks.add("restart-unavailable", reached,
               "called the new coordinator" if reached else
               f"exited (status {client.proc.returncode}) while the coordinator was down" if alive
               else "no call reached the new coordinator in 20 s")
    if why := _finish(second, server, client, 30.0, "the resumed run did not finish"):
        return checks.missing(["restart-rejoin", "train-update"], why)
    calls = second.calls(cid)
    lost = next((i for i, c in enumerate(calls) if c.method == "refused"), None)
    rejoin = next((i for i, c in enumerate(calls) if lost is not None and i > lost
                   and c.method == "Join"), None)
    if lost is None:
        checks.add("restart-rejoin", False, "the kit's NOT_FOUND was never sent")
    elif rejoin is None:
        checks.add("restart-rejoin", False, f"never joined again after NOT_FOUND "
                   f"({calls[lost].reason}); calls: {[c.method for c in calls[lost:][:8]]}")
    else:
        refused = [c for c in calls[lost:rejoin] if c.method == "refused"]
        checks.add("restart-rejoin", len(refused) <= 3,
                   f"joined the new coordinator; after NOT_FOUND joined again after "
                   f"{len(refused)} refused call(s)")
    _check_updates(checks, second, cid, add, examples, {2})
    return checks.outcomes


SECURE_HELPERS = (  # (id suffix, add, drop at: (kind, n-th task of that kind in round 1))
    ("kit-honest-1", 0.02, None),
    ("kit-honest-2", 0.03, None),
    ("kit-drop-keys", 0.5, (TaskKind.TRAIN, 1)),  # before advertising its keys
    ("kit-drop-shares", 0.6, (TaskKind.SECAGG, 1)),  # before sharing
    ("kit-drop-masked", 0.7, (TaskKind.SECAGG, 2)),  # before its masked input
    ("kit-drop-unmask", 0.8, (TaskKind.SECAGG, 3)),  # after its masked input, before unmasking
)


def secure(h: Harness) -> list[Outcome]:
    """One unsigned secure round of 7: the client under test, two helpers that stay, four that
    drop at each phase."""
    checks = _Checks("secure")
    cid, add, examples = checks_client(checks), 0.05, 10
    n = 1 + len(SECURE_HELPERS)
    initial = {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}
    config = EngineConfig(
        num_rounds=1, evaluate=None, round_timeout_s=60.0,
        train=SelectionConfig(fraction=1.0, min_available=n, min_results=3),
        secagg=SecureAggregationConfig(max_clients=n, threshold_fraction=0.4, clip=1.0,
                                       phase_timeout_s=15.0),
    )
    engine = h.engine(config, copy_params(initial))
    server = h.serve(engine)
    client = h.launch(server, cid, add=add, examples=examples)
    for name, helper_add, drop in SECURE_HELPERS:
        h.helper(server, name, add=helper_add, examples=examples, drop_at=drop)
    if why := _finish(engine, server, client, 60.0, "the secure round did not finish"):
        _check_join(checks, engine, cid)
        return checks.missing(["secure-round"], why)
    _check_join(checks, engine, cid)
    record = engine.records[0]
    summed = [add, 0.02, 0.03, 0.8]  # whose masked input arrived
    want = float(np.mean(summed))
    params = engine.params
    assert params is not None
    got = float(np.asarray(params["w"], np.float64).mean())
    without = float(np.mean(summed[1:]))
    if record.status != "ok":
        checks.add("secure-round", False, f"the round failed: {record.reason}")
    elif record.results_received != len(summed):
        checks.add("secure-round", False,
                   f"{record.results_received} masked inputs summed, {len(summed)} expected "
                   f"(the kit's dropouts or the client did not act as scripted)")
    elif not (np.allclose(params["w"], want, atol=1e-6) and np.allclose(params["b"], want,
                                                                          atol=1e-6)):
        checks.add("secure-round", False,
                   f"mean update {got:.7f}, expected {want:.7f} (without the client: "
                   f"{without:.7f})")
    else:
        checks.add("secure-round", True,
                   f"{record.results_received} of {n} summed, mean {got:.7f} as expected")
    return checks.outcomes


SCENARIOS: dict[str, Scenario] = {
    "plain": plain,
    "waiting": waiting,
    "decline": decline,
    "late": late,
    "restart": restart,
    "secure": secure,
}
