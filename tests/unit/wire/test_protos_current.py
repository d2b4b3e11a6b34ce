"""The committed generated code under fedcore/proto/v1 matches what protos/ generates now."""

from __future__ import annotations

from pathlib import Path

import pytest

import fedcore

COMMITTED = Path(fedcore.__file__).parent / "proto" / "v1"


def test_generated_protos_are_current(tmp_path: Path) -> None:
    pytest.importorskip(
        "grpc_tools", reason="grpcio-tools (the [dev] extra) is needed to regenerate protos"
    )
    from fedcore._dev.gen_protos import generate

    generate(tmp_path)
    fresh_dir = tmp_path / "fedcore" / "proto" / "v1"
    fresh = {p.name: p.read_bytes() for p in fresh_dir.iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}

    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, (
        f"fedcore/proto/v1 is stale for {stale}: run `python -m fedcore._dev.gen_protos` "
        "and commit the result"
    )
