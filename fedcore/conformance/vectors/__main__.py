"""`python -m fedcore.conformance.vectors --out PATH`: write the secure-aggregation vectors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedcore.conformance.vectors import VECTORS_PATH, generate, render


def main(argv: list[str] | None = None) -> int:
    """Generate the vectors and write them to --out (or print them with --out -)."""
    parser = argparse.ArgumentParser(
        prog="python -m fedcore.conformance.vectors",
        description="Regenerate fedcore's secure-aggregation test vectors (JSON) with the "
        "reference implementation.",
    )
    parser.add_argument("--out", required=True,
                        help=f"file to write, or - for stdout (the shipped file: {VECTORS_PATH})")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="ascii")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
