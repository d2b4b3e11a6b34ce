"""Import-scan checks on fedcore/: who may touch generated protobuf code, no unpickling, and a
client package free of gRPC."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fedcore

ROOT = Path(fedcore.__file__).parent
PROTO_IMPORTERS = ("wire", "transport", "_dev", "proto")
# fedcore.client re-exports the gRPC driver's run_client and BackgroundClient, loaded on first use.
CLIENT_FACADE = "client/__init__.py"
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "shelve", "marshal"}


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path)))
        for path in sorted(ROOT.rglob("*.py"))
    ]


def imported_names(rel: str, tree: ast.Module) -> list[str]:
    """Absolute dotted names of every module `tree` imports (relative imports resolved)."""
    package = ["fedcore", *rel.removesuffix(".py").split("/")][:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return names


def test_scan_sees_the_package() -> None:
    assert "wire/convert.py" in dict(modules())


def test_resolves_relative_proto_imports() -> None:
    tree = ast.parse("from ..proto.v1 import tensor_pb2")

    assert "fedcore.proto.v1.tensor_pb2" in imported_names("engine/x.py", tree)


def test_only_wire_transport_and_dev_import_generated_protos() -> None:
    offenders = [
        rel
        for rel, tree in modules()
        if rel.split("/")[0] not in PROTO_IMPORTERS
        and any(
            n == "fedcore.proto" or n.startswith("fedcore.proto.")
            for n in imported_names(rel, tree)
        )
    ]

    assert not offenders, (
        f"only fedcore/{{wire,transport,_dev}} may import fedcore.proto: {offenders}"
    )


def test_nothing_imports_pickle_like_modules() -> None:
    offenders = [
        (rel, name)
        for rel, tree in modules()
        for name in imported_names(rel, tree)
        if name.split(".")[0] in UNSAFE_MODULES
    ]

    assert not offenders, f"fedcore must never unpickle: {offenders}"


def unsafe_torch_loads(tree: ast.Module) -> list[int]:
    """Lines of `torch.load(...)` calls that lack a literal `weights_only=True`."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
            and not any(
                kw.arg == "weights_only"
                and isinstance(kw.value, ast.Constant)
                and kw.value.value is True
                for kw in node.keywords
            )
        ):
            lines.append(node.lineno)
    return lines


def test_detects_torch_load_without_weights_only() -> None:
    tree = ast.parse(
        "torch.load(f)\ntorch.load(f, weights_only=False)\ntorch.load(f, weights_only=True)"
    )

    assert unsafe_torch_loads(tree) == [1, 2]


def test_torch_load_always_passes_weights_only() -> None:
    offenders = [(rel, line) for rel, tree in modules() for line in unsafe_torch_loads(tree)]

    assert not offenders, f"torch.load needs weights_only=True: {offenders}"


def test_no_torch_load_alias_or_bare_load_import() -> None:
    offenders = [
        rel
        for rel, tree in modules()
        if any(n in ("torch.load", "torch.serialization.load") for n in imported_names(rel, tree))
    ]

    assert not offenders, f"import torch and call torch.load(..., weights_only=True): {offenders}"


def grpc_imports(rel: str, tree: ast.Module) -> list[str]:
    """The gRPC modules `tree` imports: grpc itself, or fedcore's gRPC driver."""
    return [
        n for n in imported_names(rel, tree)
        if n.split(".")[0] in ("grpc", "grpc_health")
        or (n.startswith("fedcore.transport.grpc") and rel != CLIENT_FACADE)
    ]


def test_detects_grpc_imports() -> None:
    tree = ast.parse("import grpc\nfrom ..transport.grpc import client_connection")

    assert grpc_imports("client/x.py", tree) == [
        "grpc", "fedcore.transport.grpc", "fedcore.transport.grpc.client_connection"]


def test_the_client_package_imports_no_grpc() -> None:
    offenders = [
        (rel, name)
        for rel, tree in modules()
        if rel.startswith("client/")
        for name in grpc_imports(rel, tree)
    ]

    assert not offenders, f"fedcore/client/ talks to a Connection, never to gRPC: {offenders}"


def test_importing_the_client_package_loads_no_grpc() -> None:
    code = (
        "import importlib, pkgutil, sys, fedcore.client as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module(f'fedcore.client.{m.name}')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'grpc'))\n"
    )

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


def package_graph() -> dict[str, set[str]]:
    """fedcore's subpackages (and top-level modules) -> those they import, the client facade's
    lazy re-export of the gRPC driver aside."""
    graph: dict[str, set[str]] = {}
    for rel, tree in modules():
        if rel == CLIENT_FACADE:
            continue
        source = rel.split("/")[0].removesuffix(".py")
        for name in imported_names(rel, tree):
            parts = name.split(".")
            if parts[0] == "fedcore" and len(parts) > 1 and parts[1] != source:
                graph.setdefault(source, set()).add(parts[1])
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_detects_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_subpackages() -> None:
    found = cycles(package_graph())

    assert not found, f"subpackages import each other in a cycle (move the shared piece down): {found}"


def test_the_protocol_vocabulary_imports_nothing_above_it() -> None:
    above = package_graph().get("protocol", set()) - {"errors", "secagg"}

    assert not above, f"fedcore/protocol/ may import only fedcore.errors and secagg's messages: {above}"
