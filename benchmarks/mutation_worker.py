"""A fork server for mutation runs: import the heavy libraries once, fork a pytest per mutant.

Importing torch, opacus, grpc and hypothesis takes seconds, longer than most mutants' tests.
`Worker` starts `python -P -m benchmarks.mutation_worker` with the scratch copy of fedcore first
on its path; that process imports those libraries (never fedcore) and then, for each request on
its stdin, forks a child that runs pytest on the requested tests and exits with pytest's code.
The child imports fedcore fresh, so it sees the mutant written into the scratch copy just before.
Requests and replies are one JSON line each; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PRELOAD = ("numpy", "torch", "opacus", "grpc", "google.protobuf", "cryptography",
            "hypothesis", "pytest", "_pytest.python", "scipy")
WRONG_COPY = 97  # the child imported a fedcore other than the scratch copy
WALL_FACTOR = 8  # wall-clock limit = this many times the CPU-time limit


class _Select:
    """pytest plugin: keep only the given node ids, files in the given order."""

    def __init__(self, tests: list[str]) -> None:
        self.rank = {test: i for i, test in enumerate(tests)}

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        def file_of(item: pytest.Item) -> str:
            return item.nodeid.split("::")[0]

        kept = [item for item in items
                if item.nodeid in self.rank or file_of(item) in self.rank]
        first: dict[str, int] = {}
        for item in kept:
            rank = min(self.rank.get(item.nodeid, 1 << 30),
                       self.rank.get(file_of(item), 1 << 30))
            first[file_of(item)] = min(first.get(file_of(item), 1 << 30), rank)
        items[:] = sorted(kept, key=lambda item: first[file_of(item)])


def _child(scratch: str, tests: list[str], timeout_s: float) -> None:
    os.setsid()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import fedcore

    if not str(Path(fedcore.__file__).resolve()).startswith(str(Path(scratch).resolve())):
        os._exit(WRONG_COPY)
    import pytest

    files = sorted({t.split("::")[0] for t in tests})
    code = pytest.main([*files, "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        f"--timeout={int(WALL_FACTOR * timeout_s)}"], plugins=[_Select(tests)])
    os._exit(int(code))


def serve() -> None:
    """The worker's loop: one request line in, one reply line out."""
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    assert "fedcore" not in sys.modules, "the worker must not import fedcore before forking"
    os.chdir(ROOT)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        timeout_s = float(request["timeout_s"])
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                _child(request["scratch"], list(request["tests"]), timeout_s)
            finally:
                os._exit(70)
        outcome = _wait(pid, timeout_s)
        print(json.dumps({"outcome": outcome, "s": round(time.monotonic() - started, 2)}),
              flush=True)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of a running process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(pid: int, timeout_s: float) -> str:
    """The child's outcome; 'timeout' once it has used `timeout_s` of CPU time (so a busy
    machine does not turn slow tests into kills), or WALL_FACTOR times that in wall time (a
    mutant that hangs without computing)."""
    deadline = time.monotonic() + WALL_FACTOR * timeout_s
    delay = 0.01
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if code == WRONG_COPY:
                return "wrong-copy"
            return {0: "survived", 5: "no-tests"}.get(code, "killed")
        if time.monotonic() > deadline or _cpu_seconds(pid) > timeout_s:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(delay)
        delay = min(0.1, delay * 2)


class Worker:
    """One fork server bound to one scratch copy of fedcore."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(scratch), str(ROOT)]),
                   PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "benchmarks.mutation_worker"], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdin is not None
        self._in: IO[str] = self.process.stdin
        self._out: IO[str] = self.process.stdout
        ready = self._out.readline()
        if not ready:
            raise RuntimeError("the mutation worker did not start")

    def run(self, tests: list[str], timeout_s: float) -> tuple[str, float]:
        """('killed' | 'survived' | 'timeout' | 'no-tests', seconds) for these tests."""
        if not tests:
            return "no-tests", 0.0
        self._in.write(json.dumps({"scratch": str(self.scratch), "tests": tests,
                                   "timeout_s": timeout_s}) + "\n")
        self._in.flush()
        reply = json.loads(self._out.readline())
        if reply["outcome"] == "wrong-copy":
            raise RuntimeError("the tests imported the installed fedcore, not the mutated copy")
        return str(reply["outcome"]), float(reply["s"])

    def close(self) -> None:
        self._in.close()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    serve()
