"""Every exception fedcore defines derives from `fedcore.FedcoreError` and keeps its built-in base."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import fedcore
from fedcore import FedcoreError
from fedcore.client import ClientAppError, StateError
from fedcore.config import ConfigError
from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.secagg.roster import RosterError

ROOT = Path(fedcore.__file__).parent


def exception_classes() -> list[type[BaseException]]:
    """Exception classes defined at the top level of fedcore's modules (generated code aside)."""
    found: list[type[BaseException]] = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "proto":
            continue
        tree = ast.parse(path.read_text())
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.bases]
        if not names:
            continue
        module = importlib.import_module("fedcore." + ".".join(rel.with_suffix("").parts))
        found += [c for n in names if isinstance(c := getattr(module, n), type)
                  and issubclass(c, BaseException)]
    return found


def test_every_fedcore_exception_derives_from_the_root() -> None:
    classes = exception_classes()

    assert len(classes) >= 16
    assert not [c.__qualname__ for c in classes if not issubclass(c, FedcoreError)]


def test_exceptions_keep_their_builtin_bases() -> None:
    assert issubclass(WireError, ValueError) and issubclass(PayloadTooLarge, ValueError)
    assert issubclass(ConfigError, ValueError) and issubclass(RosterError, ValueError)
    assert issubclass(ClientAppError, RuntimeError) and issubclass(StateError, RuntimeError)
