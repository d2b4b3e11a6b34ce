"""`python -m fedcore.conformance --client-cmd "..."`: the conformance kit for clients of the
fedcore wire protocol written in any language (docs/protocol.md, section "Conformance").

Exit status: 0 when every requirement checked passed, 1 when one failed, 2 for a bad command
line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fedcore.conformance.harness import PLACEHOLDERS, ClientCommand, CommandError
from fedcore.conformance.runner import (
    DEFAULT_TOKEN,
    as_json,
    check_scenarios,
    passed,
    run_kit,
    table,
)
from fedcore.conformance.scenarios import SCENARIOS

REFERENCE = ("python -m fedcore.conformance.reference_client {address} {client_id} "
             "--token {token} --add {add} --examples {examples}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the kit; returns the exit status."""
    p = argparse.ArgumentParser(
        prog="python -m fedcore.conformance",
        description="Run scripted scenarios against a client of the fedcore wire protocol and "
                    "report each requirement of docs/protocol.md as passed or failed.",
        epilog=f"The reference client: --client-cmd '{REFERENCE}' (with the interpreter that "
               "has fedcore installed).",
    )
    p.add_argument("--client-cmd", required=True,
                   help="the command that starts the client under test, with placeholders "
                        + ", ".join("{" + n + "}" for n in PLACEHOLDERS)
                        + " ({address} required)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated scenarios to run (default: all: {','.join(SCENARIOS)})")
    p.add_argument("--token", default=DEFAULT_TOKEN, help="the shared token ({token})")
    p.add_argument("--log-dir", type=Path,
                   help="keep the client's output here (default: a temporary directory, kept "
                        "only when a requirement failed)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON line instead of the table")
    p.add_argument("-v", "--verbose", action="store_true", help="log the coordinator's events")
    args = p.parse_args(argv)
    try:
        command = ClientCommand(args.client_cmd)
        names = check_scenarios([n.strip() for n in args.scenarios.split(",") if n.strip()])
    except (CommandError, ValueError) as err:
        p.error(str(err))
    if not names:
        p.error("--scenarios names no scenario")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        outcomes = run_kit(command, names, token=args.token, log_dir=args.log_dir)
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(as_json(outcomes) if args.json else table(outcomes))
    return 0 if passed(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
