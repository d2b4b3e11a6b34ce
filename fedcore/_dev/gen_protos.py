"""Regenerate fedcore/proto/ from protos/: `python -m fedcore._dev.gen_protos`.

Needs grpcio-tools (the [dev] extra). The output is committed; a test checks it is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "protos"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    """All .proto sources under `root`, sorted."""
    return sorted(root.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc on every source, writing *_pb2.py, *_pb2.pyi and *_pb2_grpc.py under `out_dir`."""
    from grpc_tools import protoc  # dev-only dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    for package in (out_dir / "fedcore" / "proto", out_dir / "fedcore" / "proto" / "v1"):
        (package / "__init__.py").touch()


def main() -> int:
    generate(REPO)
    print(f"generated {len(proto_files())} proto files into fedcore/proto/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
