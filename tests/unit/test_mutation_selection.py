"""The mutation tool runs, for each mutant, the tests that can see it: those that executed the
function it changes; for code that runs at import (module and class bodies, default values) also
the package's own test files; and the package's test files written since the coverage map."""

from __future__ import annotations

import ast
import textwrap

from benchmarks.mutation import Candidate, Mutant, _spots, select_tests
from benchmarks.mutation_map import TestMap

SOURCE = textwrap.dedent('''\
    LIMIT = 3


    class Box:
        size = 2

        def grow(self, by=5):
            total = self.size + by

            def inner():
                return total * 7

            return inner()
    ''')


def _bodies() -> dict[str, set[tuple[int, int] | None]]:
    """For each constant's value, the function body lines the tool gives it."""
    found: dict[str, set[tuple[int, int] | None]] = {}
    for _, _, body, node in _spots(ast.parse(SOURCE)):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            found.setdefault(str(node.value), set()).add(body)
    return found


def test_each_mutable_spot_knows_the_function_body_it_runs_in() -> None:
    bodies = _bodies()
    assert bodies["3"] == {None}  # module constant: runs at import
    assert bodies["7"] == {(11, 11)}  # inside inner(): that function's body only
    assert bodies["2"] == {None}  # `size = 2` in the class body runs at import
    assert bodies["5"] == {None}  # a default value is evaluated where the def runs


def _candidate(body: tuple[int, int] | None) -> Candidate:
    mutant = Mutant(id="fedcore/x.py::f::int+1#0", path="fedcore/x.py", line=8, kind="int+1",
                    before="", after="")
    return Candidate(mutant, ast.parse(""), (), ast.Constant(1), body)


MAP = TestMap(
    lines={"fedcore/x.py": {"1": [""], "8": ["tests/unit/a/test_b.py::slow", ""],
                            "9": ["tests/unit/a/test_b.py::fast"],
                            "20": ["tests/unit/other/test_c.py::elsewhere"]}},
    durations={"tests/unit/a/test_b.py::slow": 2.0, "tests/unit/a/test_b.py::fast": 0.1,
               "tests/unit/other/test_c.py::elsewhere": 1.0},
    built_at=0.0)


def test_a_function_mutant_runs_the_tests_that_ran_that_function_fastest_first() -> None:
    chosen = select_tests(_candidate((9, 12)), ["tests/unit/x/test_x.py"], MAP, fresh=[])
    assert chosen.tests == ["tests/unit/a/test_b.py::fast"]


def test_code_that_ran_at_import_adds_the_package_files_and_new_ones_of_that_package() -> None:
    guards = ["tests/unit/x/test_x.py", "tests/unit/x/test_new.py"]
    fresh = ["tests/unit/x/test_new.py", "tests/unit/y/test_other_package.py"]
    chosen = select_tests(_candidate((8, 9)), guards, MAP, fresh)  # line 8 also ran at import
    assert chosen.tests == ["tests/unit/a/test_b.py::fast", "tests/unit/a/test_b.py::slow",
                            "tests/unit/x/test_new.py", "tests/unit/x/test_x.py"]
    module_level = select_tests(_candidate(None), guards, MAP, fresh=[])
    assert "tests/unit/other/test_c.py::elsewhere" in module_level.tests
    assert set(guards) <= set(module_level.tests)


def test_a_function_no_test_ran_has_no_tests() -> None:
    assert select_tests(_candidate((30, 40)), ["tests/unit/x/test_x.py"], MAP, []).tests == []
