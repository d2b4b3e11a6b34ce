"""fedcore/dp/opacus.py is the only module of fedcore that imports opacus."""

from __future__ import annotations

import ast
from pathlib import Path

import fedcore

ROOT = Path(fedcore.__file__).parent


def _imports_opacus(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "opacus"
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "opacus":
            return True
    return False


def test_only_the_boundary_module_imports_opacus():
    importers = sorted(
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*.py")
        if _imports_opacus(ast.parse(path.read_text(), filename=str(path)))
    )

    assert importers == ["dp/opacus.py"]
