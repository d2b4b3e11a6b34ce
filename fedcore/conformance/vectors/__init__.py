"""Known-answer test vectors for fedcore's secure aggregation (wire protocol v1).

`generate()` runs the reference implementation on fixed inputs and returns every vector group;
`render()` turns them into the JSON text of `VECTORS_PATH` (`secagg-v1.json`, shipped with the
package and cited group by group in docs/protocol.md, section 8). Regenerate it with
`python -m fedcore.conformance.vectors --out PATH`; a test fails on any byte difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "fedcore-secagg-vectors"
VERSION = 1
VECTORS_PATH = Path(__file__).with_name("secagg-v1.json")


def generate() -> dict[str, Any]:
    """Every vector group, computed now by the reference implementation."""
    from fedcore.conformance.vectors import encoding, primitives, round

    return {
        "format": FORMAT,
        "version": VERSION,
        "protocol_version": 1,
        "conventions": "Bytes are lowercase hex strings. Integers are JSON numbers (up to 2^64 - "
        "1: read them as unsigned 64-bit integers). Floats are IEEE 754 binary64 written as the "
        "shortest decimal that reads back to the same value; *_bits fields give the bit pattern. "
        "u32be/u64be: unsigned big-endian integers of 4/8 bytes. Inputs called random were drawn "
        "from SHA-256(b'fedcore-conformance-v1/' || label || u64be(counter)) blocks "
        "(fedcore/conformance/vectors/drbg.py) and are listed, so no generator is needed.",
        "tensor_encoding": encoding.tensor_group(),
        "x25519": primitives.x25519_group(),
        "hkdf": primitives.hkdf_group(),
        "share_encryption": primitives.share_encryption_group(),
        "commitments": primitives.commitments_group(),
        "shamir": primitives.shamir_group(),
        "prg": primitives.prg_group(),
        "packing": primitives.packing_group(),
        "graph": primitives.graph_group(),
        "signatures": primitives.signatures_group(),
        "quantization": encoding.quantization_group(),
        "distributed_dp": encoding.distributed_dp_group(),
        "rounds": round.rounds_group(),
    }


def render(vectors: dict[str, Any]) -> str:
    """The file's text: stable key order, one-space indent, ASCII, final newline."""
    return json.dumps(vectors, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def load(path: Path = VECTORS_PATH) -> dict[str, Any]:
    """The vectors stored at `path` (default: the file shipped with fedcore)."""
    value: dict[str, Any] = json.loads(path.read_text(encoding="ascii"))
    return value
