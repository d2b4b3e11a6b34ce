"""Which tests run which lines of fedcore: the map that picks the tests for each mutant.

`python -m benchmarks.mutation` runs, for a mutant, only the unit tests that executed the
function it changes (a test that never runs that code cannot fail because of it), as mutmut and
cosmic-ray do. The map comes from one run of `tests/unit` under coverage with one coverage
context per test (this module is also the pytest plugin that switches them); it is cached in
`.mutation-cache/` and rebuilt when a file under fedcore/ changed since (or with `--remap`).

Left out of the map: tests that fail without any mutant (they would "kill" every mutant) and
tests that start Ray (their work runs in other processes, which coverage does not see here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".mutation-cache"
MAP_FILE = CACHE / "map.json"
TEST_ROOTS = ["tests/unit"]
_OUTCOMES_ENV = "FEDCORE_MUTATION_OUTCOMES"


# ---------------------------------------------------------------- the pytest plugin (map build)
_outcomes: dict[str, dict[str, object]] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Record what this test runs under a coverage context of its own node id."""
    import coverage

    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(item.nodeid)
    _outcomes[item.nodeid] = {"ok": True, "s": 0.0,
                              "ray": "local_ray" in getattr(item, "fixturenames", ())}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"ok": True, "s": 0.0, "ray": False})
    entry["s"] = float(entry["s"]) + report.duration  # type: ignore[arg-type]
    if report.failed or (report.when == "call" and report.skipped):
        entry["ok"] = False


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(_OUTCOMES_ENV)
    if path:
        Path(path).write_text(json.dumps(_outcomes))


# ---------------------------------------------------------------- building and reading the map
def _newest_source_mtime() -> float:
    newest = 0.0
    for path in (ROOT / "fedcore").rglob("*.py"):
        newest = max(newest, path.stat().st_mtime)
    return newest


def build(force: bool = False) -> TestMap:
    """The map, rebuilt (about 3 minutes) when fedcore/ changed since the last (its line numbers
    would be stale); test files written since are run whole instead (`tests_newer_than_map`)."""
    if not force and MAP_FILE.exists():
        known = TestMap.load()
        if known.built_at >= _newest_source_mtime():
            return known
    CACHE.mkdir(exist_ok=True)
    data_file = CACHE / f"coverage.{os.getpid()}.db"
    outcomes_file = CACHE / f"outcomes.{os.getpid()}.json"
    data_file.unlink(missing_ok=True)
    print("mutation: mapping which tests run which lines (tests/unit under coverage) ...",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    started_at = time.time()
    env = dict(os.environ, **{_OUTCOMES_ENV: str(outcomes_file)})
    subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data_file}",
                    "--source=fedcore", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "benchmarks.mutation_map", *TEST_ROOTS],
                   cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
    outcomes: dict[str, dict[str, object]] = json.loads(outcomes_file.read_text())
    usable = {test for test, o in outcomes.items() if o["ok"] and not o["ray"]}
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    lines: dict[str, dict[str, list[str]]] = {}
    for measured in data.measured_files():
        relpath = str(Path(measured).resolve().relative_to(ROOT))
        by_line = data.contexts_by_lineno(measured)
        lines[relpath] = {str(n): sorted(c for c in contexts if c in usable or c == "")
                          for n, contexts in by_line.items()}
    durations = {test: round(float(outcomes[test]["s"]), 3) for test in usable}  # type: ignore[arg-type]
    excluded = sorted(set(outcomes) - usable)
    partial = MAP_FILE.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"lines": lines, "durations": durations,
                                   "excluded": excluded, "started_at": started_at}))
    partial.replace(MAP_FILE)  # whole or not at all, for runs that read it meanwhile
    data_file.unlink(missing_ok=True)
    outcomes_file.unlink(missing_ok=True)
    print(f"mutation: mapped {len(usable)} tests in {time.monotonic() - started:.0f} s "
          f"({len(excluded)} left out: failing or Ray)", file=sys.stderr, flush=True)
    return TestMap.load()


@dataclass(frozen=True)
class TestMap:
    """Coverage by test: for each fedcore file and line, the tests that ran it."""

    __test__ = False  # a map of tests, not a pytest test class
    lines: dict[str, dict[str, list[str]]]
    durations: dict[str, float]
    built_at: float
    _by_file: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for test, seconds in self.durations.items():
            file = test.split("::")[0]
            self._by_file[file] = self._by_file.get(file, 0.0) + seconds

    @classmethod
    def load(cls) -> TestMap:
        raw = json.loads(MAP_FILE.read_text())
        return cls(raw["lines"], raw["durations"], float(raw["started_at"]))

    def tests_running(self, relpath: str, first: int, last: int) -> tuple[set[str], bool]:
        """(tests that ran any of lines first..last of the file, whether any ran at import)."""
        by_line = self.lines.get(relpath, {})
        found: set[str] = set()
        at_import = False
        for line, tests in by_line.items():
            if not first <= int(line) <= last:
                continue
            for test in tests:
                if test:
                    found.add(test)
                else:
                    at_import = True
        return found, at_import

    def tests_newer_than_map(self, roots: Iterable[str]) -> list[str]:
        """Test files written since the map was built: they run whole."""
        return sorted(str(p.relative_to(ROOT)) for root in roots
                      for p in (ROOT / root).rglob("test_*.py")
                      if p.stat().st_mtime > self.built_at)

    def file_seconds(self, file: str) -> float:
        """How long a test file's tests took when mapped (30 s for one written since)."""
        return self._by_file.get(file, 30.0)

    def fastest_first(self, tests: Iterable[str]) -> list[str]:
        return sorted(tests, key=lambda t: (self.durations.get(t, 0.0), t))
