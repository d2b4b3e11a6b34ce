"""Mutation testing of fedcore's core: do the tests fail when the code is wrong?

`python -m benchmarks.mutation [--package secagg ...] [--sample N --seed S] [--jobs J]` plants
one small bug (a *mutant*) at a time in a scratch copy of `fedcore/`, runs against the copy the
unit tests that executed the function it changes (`benchmarks.mutation_map`; `pytest -x`, a limit
in CPU time), and counts the mutant *killed* when a test fails or times out, *survived* when every
test passes. It prints one JSON line:

    {"packages": {"secagg": {"mutants": 812, "sampled": 40, "killed": 37, "survived": 2,
     "equivalent": 1, "score": 0.974, ...}, ...}, "sample": 40, "seed": 0, ...}

with score = killed / (sampled - equivalent) per package; equivalent mutants (ones no test can
kill because the program behaves the same) are listed with a reason in
`benchmarks/results/mutation_equivalent.json`, keyed by the mutant's stable id. The survivors
(id, file, line, the source line before and after) go to `--survivors`
(benchmarks/results/mutation_survivors.json), the summary to `--out`
(benchmarks/results/mutation.json). `--list` prints the mutants without running anything;
`--only ID` runs given mutants (to check a new test kills them).

Mutations (one at a time, on the module's AST, written back with `ast.unparse`): + <-> -,
* <-> /, < <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in, and <-> or, `not x` -> x,
-x -> x, integer constants +1 (and 0 <-> 1), float constants * 2, True <-> False, `return x`
-> `return None`, a `raise` statement -> `pass`, an `if` guard without `else` -> `if False`.
Docstrings, strings, annotations and `TYPE_CHECKING` blocks are not mutated.

Why not mutmut: mutmut rewrites the sources it mutates (in place, or in a `mutants/` copy that
its own runner drives with a full-suite statistics pass first); this tree is shared by several
workers and the machine has 2 cores, so this tool mutates only a private copy, imports it
through PYTHONPATH with `python -P` (the working tree's editable install stays untouched) in
pytest processes forked from a worker that has imported torch once (`benchmarks.mutation_worker`),
and samples. Not run in CI: all 3,600 mutants take over an hour here; 50 per package, minutes.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import mutation_map
from benchmarks.mutation_map import TestMap
from benchmarks.mutation_worker import Worker

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EQUIVALENT_FILE = RESULTS / "mutation_equivalent.json"

# package -> (source files, relative to fedcore/; the fast tests that guard them)
PACKAGES: dict[str, tuple[list[str], list[str]]] = {
    "secagg": (["secagg/*.py"], ["tests/unit/secagg", "tests/unit/wire/test_secagg_payload.py",
                                 "tests/unit/wire/test_secagg_setup.py"]),
    "dp": (["dp/*.py"], ["tests/unit/dp"]),
    "aggregate": (["aggregate/*.py"], ["tests/unit/aggregate"]),
    "engine": (["engine/*.py"], ["tests/unit/engine", "tests/unit/transport/test_pinned_refusals.py"]),
    "wire": (["wire/*.py"], ["tests/unit/wire"]),
    "client": (["client/handler.py", "client/sgd.py", "client/torch_app.py",
                "training/proximal.py"],
               ["tests/unit/client", "tests/unit/training", "tests/unit/dp/test_pinned_budget.py",
                "tests/unit/engine/test_signed_rounds.py"]),  # the handler's secure steps
}


@dataclass(frozen=True, slots=True)
class Mutant:
    """One planted bug: `kind` at the `ordinal`-th such spot of `scope` in `path`."""

    id: str
    path: str  # relative to the repository root
    line: int
    kind: str
    before: str
    after: str


# ---------------------------------------------------------------- mutation operators
_SWAP: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.And: ast.Or, ast.Or: ast.And,
}


def _mutations(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """(kind, replacement) for each mutation of `node` itself."""
    if isinstance(node, ast.BinOp) and type(node.op) in _SWAP:
        yield f"{type(node.op).__name__}->{_SWAP[type(node.op)].__name__}", ast.BinOp(
            node.left, _SWAP[type(node.op)](), node.right)
    elif isinstance(node, ast.AugAssign) and type(node.op) in _SWAP:
        yield f"{type(node.op).__name__}=->{_SWAP[type(node.op)].__name__}=", ast.AugAssign(
            node.target, _SWAP[type(node.op)](), node.value)
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _SWAP:
                ops = list(node.ops)
                ops[i] = _SWAP[type(op)]()
                yield f"{type(op).__name__}->{type(ops[i]).__name__}", ast.Compare(
                    node.left, ops, node.comparators)
    elif isinstance(node, ast.BoolOp):
        yield f"{type(node.op).__name__}->{_SWAP[type(node.op)].__name__}", ast.BoolOp(
            _SWAP[type(node.op)](), node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        yield f"drop-{type(node.op).__name__}", node.operand
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield f"{value}->{not value}", ast.Constant(not value)
        elif isinstance(value, int):
            yield "int+1", ast.Constant(value + 1)
            if value == 1:
                yield "1->0", ast.Constant(0)
        elif isinstance(value, float):
            yield "float*2", ast.Constant(value * 2 if value else 1.0)
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return-None", ast.Return(ast.Constant(None))
    elif isinstance(node, ast.Raise):
        yield "raise->pass", ast.Pass()
    elif isinstance(node, ast.If) and not node.orelse and not _is_type_checking(node):
        yield "if->False", ast.If(ast.Constant(False), node.body, [])


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


_SKIPPED_FIELDS = {"annotation", "returns", "decorator_list", "type_comment"}


Lines = tuple[int, int] | None  # the body of the function a mutant is in (None: import time)


def _spots(tree: ast.Module) -> Iterator[tuple[tuple[int | str, ...], str, Lines, ast.AST]]:
    """(path to the node from the root, qualified scope name, the lines of the innermost
    function's body, node) for every mutable node."""

    def walk(node: ast.AST, path: tuple[int | str, ...], scope: str, body: Lines) -> Iterator[
            tuple[tuple[int | str, ...], str, Lines, ast.AST]]:
        outer = body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = f"{scope}.{node.name}" if scope else node.name
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = (node.body[0].lineno, node.end_lineno or node.body[-1].lineno)
        elif isinstance(node, ast.ClassDef):
            body = None  # a class body runs at import
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.JoinedStr):
            return
        if _is_docstring(node):
            return
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        yield path, scope or "<module>", body, node
        for field, value in ast.iter_fields(node):
            if field in _SKIPPED_FIELDS:
                continue
            # a function's default values are evaluated where it is defined
            inner = body if field != "args" else outer
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        yield from walk(item, (*path, field, i), scope, inner)
            elif isinstance(value, ast.AST):
                yield from walk(value, (*path, field), scope, inner)

    yield from walk(tree, (), "", None)


def _is_docstring(node: ast.AST) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _replace(tree: ast.Module, path: tuple[int | str, ...], new: ast.AST) -> ast.Module:
    mutated = copy.deepcopy(tree)
    parent: ast.AST = mutated
    for step in path[:-2] if isinstance(path[-1], int) else path[:-1]:
        parent = parent[step] if isinstance(step, int) else getattr(parent, step)  # type: ignore[index]
    if isinstance(path[-1], int):
        getattr(parent, str(path[-2]))[path[-1]] = new
    else:
        setattr(parent, path[-1], new)
    return ast.fix_missing_locations(mutated)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A mutant and how to make its source (built only for the mutants that are run)."""

    mutant: Mutant
    tree: ast.Module
    spot: tuple[int | str, ...]
    replacement: ast.AST
    body: Lines  # the lines of the function it changes; None: code that runs at import

    def source(self) -> str:
        """The whole module with this one mutation."""
        return ast.unparse(_replace(self.tree, self.spot, self.replacement))


def mutants_of(relpath: str) -> list[Candidate]:
    """Every mutant of one module."""
    source = (ROOT / relpath).read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    counts: dict[tuple[str, str], int] = {}
    found: list[Candidate] = []
    for spot, scope, body, node in _spots(tree):
        for kind, new in _mutations(node):
            ordinal = counts.get((scope, kind), 0)
            counts[scope, kind] = ordinal + 1
            line = getattr(node, "lineno", 0)
            after = "if False:" if isinstance(new, ast.If) else ast.unparse(new)
            mutant = Mutant(id=f"{relpath}::{scope}::{kind}#{ordinal}", path=relpath, line=line,
                            kind=kind, before=lines[line - 1].strip() if line else "",
                            after=after.split("\n")[0][:200])
            found.append(Candidate(mutant, tree, spot, new, body))
    return found


def package_mutants(package: str) -> list[Candidate]:
    patterns, _ = PACKAGES[package]
    files = sorted({p for pattern in patterns for p in (ROOT / "fedcore").glob(pattern)
                    if p.name != "__init__.py"})
    return [m for f in files for m in mutants_of(str(f.relative_to(ROOT)))]


# ---------------------------------------------------------------- running
class Scratch:
    """A private copy of fedcore/ that one mutant at a time is written into, and its worker."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fedcore-mutation-"))
        shutil.copytree(ROOT / "fedcore", self.dir / "fedcore",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for entry in ROOT.iterdir():  # what the package finds next to it (protos/, docs/)
            if entry.name not in ("fedcore", ".git", ".venv", ".mutation-cache"):
                (self.dir / entry.name).symlink_to(entry)
        self.worker = Worker(self.dir)

    def run(self, tests: list[str], timeout_s: float, mutant: Candidate | None,
            ) -> tuple[str, float]:
        """('killed' | 'survived' | 'timeout' | 'no-tests', seconds) for `mutant` (None: none)."""
        target = original = None
        if mutant is not None:
            target = self.dir / mutant.mutant.path
            original = target.read_text()
            target.write_text(mutant.source())
        try:
            return self.worker.run(tests, timeout_s)
        finally:
            if target is not None and original is not None:
                target.write_text(original)

    def close(self) -> None:
        self.worker.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def package_test_files(package: str) -> list[str]:
    """The test files that guard `package` as a whole (run for code that runs at import)."""
    found: set[str] = set()
    for entry in PACKAGES[package][1]:
        path = ROOT / entry
        found.update(str(p.relative_to(ROOT)) for p in (
            path.rglob("test_*.py") if path.is_dir() else [path]))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class Selection:
    """The tests one mutant runs, fastest first, and a time limit for them."""

    tests: list[str]
    timeout_s: float


def select_tests(candidate: Candidate, guards: list[str], test_map: TestMap,
                 fresh: list[str]) -> Selection:
    """The tests that ran the mutated function (also the package's own test files, `guards`, for
    code that runs at import), and those of `guards` written since the map."""
    m = candidate.mutant
    first, last = candidate.body or (1, 1 << 30)
    found, at_import = test_map.tests_running(m.path, first, last)
    whole = [f for f in fresh if f in guards]
    if candidate.body is None or at_import:
        whole += [f for f in guards if f not in whole]
    ordered = test_map.fastest_first(found)
    expected = sum(test_map.durations.get(t, 0.0) for t in ordered) + sum(
        test_map.file_seconds(f) for f in whole)
    return Selection(ordered + whole, max(30.0, 3 * expected + 20))


def load_equivalent() -> dict[str, str]:
    if not EQUIVALENT_FILE.exists():
        return {}
    data: dict[str, str] = json.loads(EQUIVALENT_FILE.read_text())
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", action="append", choices=sorted(PACKAGES),
                        help="package to mutate (repeatable; default: all)")
    parser.add_argument("--sample", type=int, default=0,
                        help="mutants drawn per package (0: all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel")
    parser.add_argument("--only", action="append", default=[], metavar="ID",
                        help="run only these mutant ids")
    parser.add_argument("--file", action="append", default=[], metavar="PATH",
                        help="only the mutants of this file (repeatable), e.g. "
                             "fedcore/dp/budget.py")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--recheck", action="store_true",
                        help="run only the survivors of the run in --out/--survivors (after new "
                             "tests or equivalence reasons) and update that run's figures")
    parser.add_argument("--remap", action="store_true",
                        help="rebuild the map of which tests run which lines (about 3 minutes; "
                             "done by itself when fedcore/ changed since)")
    parser.add_argument("--out", type=Path, default=RESULTS / "mutation.json")
    parser.add_argument("--survivors", type=Path, default=RESULTS / "mutation_survivors.json")
    args = parser.parse_args(argv)

    packages = args.package or sorted(PACKAGES)
    previous: dict[str, object] | None = None
    kept: list[dict[str, object]] = []
    if args.recheck:
        previous = json.loads(args.out.read_text())
        earlier = json.loads(args.survivors.read_text())
        kept = [s for s in earlier if s["package"] not in packages]
        args.only = [str(s["id"]) for s in earlier if s["package"] in packages]
        packages = sorted({str(s["package"]) for s in earlier if s["package"] in packages})
    equivalent = load_equivalent()
    chosen: dict[str, list[Candidate]] = {}
    population: dict[str, int] = {}
    for package in packages:
        every = package_mutants(package)
        population[package] = len(every)
        if args.file:
            every = [m for m in every if m.mutant.path in args.file]
        if args.only:
            picked = [m for m in every if m.mutant.id in args.only]
        elif args.sample and args.sample < len(every):
            picked = random.Random(f"{args.seed}:{package}").sample(every, args.sample)
        else:
            picked = every
        chosen[package] = sorted(picked, key=lambda m: m.mutant.id)
    if args.list:
        for package, picked in chosen.items():
            for candidate in picked:
                print(json.dumps({"package": package, **asdict(candidate.mutant)}))
        return

    summary: dict[str, dict[str, object]] = {}
    survivors: list[dict[str, object]] = []
    lock = threading.Lock()
    started = time.monotonic()
    test_map = mutation_map.build(force=args.remap)
    fresh = test_map.tests_newer_than_map(mutation_map.TEST_ROOTS)
    if fresh:
        print(f"mutation: {len(fresh)} test files newer than the map; each runs whole for the "
              "mutants of the package it guards (--remap to map them)", file=sys.stderr, flush=True)
    for package in packages:
        scratches = [Scratch() for _ in range(max(1, args.jobs))]
        try:
            whole = package_test_files(package)
            baseline, base_s = scratches[0].run(whole, 900, None)
            if baseline != "survived":
                raise SystemExit(f"{package}: the tests fail without any mutant ({baseline}); "
                                 "fix them first")
            outcomes: dict[str, int] = {"killed": 0, "survived": 0, "timeout": 0,
                                        "no-tests": 0, "equivalent": 0}
            free = list(scratches)

            def one(mutant: Candidate, outcomes: dict[str, int] = outcomes,
                    free: list[Scratch] = free, package: str = package,
                    guards: list[str] = whole) -> None:
                selection = select_tests(mutant, guards, test_map, fresh)
                with lock:
                    scratch = free.pop()
                try:
                    outcome, _ = scratch.run(selection.tests, selection.timeout_s, mutant)
                finally:
                    with lock:
                        free.append(scratch)
                m = mutant.mutant
                with lock:
                    if outcome in ("survived", "no-tests") and m.id in equivalent:
                        outcomes["equivalent"] += 1
                    else:
                        outcomes[outcome] += 1
                        if outcome in ("survived", "no-tests"):
                            survivors.append({"package": package, "outcome": outcome, **asdict(m)})
                    print(f"{outcome:9s} {m.id}  (line {m.line})", file=sys.stderr, flush=True)

            with concurrent.futures.ThreadPoolExecutor(max_workers=len(scratches)) as pool:
                list(pool.map(one, chosen[package]))
        finally:
            for scratch in scratches:
                scratch.close()
        run = len(chosen[package])
        killed = outcomes["killed"] + outcomes["timeout"]
        counted = run - outcomes["equivalent"]
        summary[package] = {
            "mutants": population[package], "sampled": run, "killed": killed,
            "timeout": outcomes["timeout"],
            "survived": outcomes["survived"] + outcomes["no-tests"],
            "equivalent": outcomes["equivalent"],
            "score": round(killed / counted, 3) if counted else None,
            "baseline_tests_s": round(base_s, 1),
        }
    if previous is not None:
        summary = _merge(previous, summary)
        survivors.extend(kept)
        result_of_previous = dict(previous)
        result_of_previous["packages"] = summary
        result_of_previous["rechecked"] = [*list(previous.get("rechecked") or []),  # type: ignore[call-overload]
                                           "python -m benchmarks.mutation " + " ".join(
                                               argv if argv is not None else sys.argv[1:])]
        _write(args, result_of_previous, survivors)
        return
    result = {
        "benchmark": "mutation",
        "packages": summary,
        "sample": args.sample or None,
        "seed": args.seed,
        "sampled": bool(args.sample) or bool(args.only) or bool(args.file),
        "only": args.only or None,
        "score_definition": "killed / (sampled - equivalent); timeouts count as killed",
        "total_s": round(time.monotonic() - started, 1),
        "command": "python -m benchmarks.mutation " + " ".join(argv if argv is not None
                                                                else sys.argv[1:]),
    }
    _write(args, result, survivors)


def _write(args: argparse.Namespace, result: dict[str, object],
           survivors: list[dict[str, object]]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.survivors.write_text(json.dumps(sorted(survivors, key=lambda s: str(s["id"])),
                                         indent=2) + "\n")
    print(json.dumps(result))


def _merge(previous: dict[str, object], now: dict[str, dict[str, object]],
           ) -> dict[str, dict[str, object]]:
    """The previous run's figures with its survivors' new outcomes (`--recheck`)."""
    merged: dict[str, dict[str, object]] = {}
    for package, before in previous["packages"].items():  # type: ignore[attr-defined]
        after = dict(before)
        if package in now:
            again = now[package]
            for key in ("killed", "timeout", "equivalent"):
                after[key] = int(before[key]) + int(again[key])  # type: ignore[call-overload]
            after["survived"] = again["survived"]
            counted = int(after["sampled"]) - int(after["equivalent"])
            after["score"] = round(int(after["killed"]) / counted, 3) if counted else None
        merged[package] = after
    return merged


if __name__ == "__main__":
    main()
