"""`fedcore`: run a coordinator, run a client, or run the local demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fedcore.cli import commands
from fedcore.cli.exits import ExitCode, exit_code_for
from fedcore.cli.logs import setup_logging
from fedcore.cli.parser import build_parser

__all__ = ["ExitCode", "build_parser", "main"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": commands.demo,
    "simulate": commands.simulate,
    "server": commands.server,
    "client": commands.client,
    "certs": commands.certs,
    "identity": commands.identity,
    "health": commands.health,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fedcore` console script; returns its exit status (`ExitCode`)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return int(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except (ValueError, RuntimeError, OSError) as err:
        print(f"fedcore {args.command}: error: {err}", file=sys.stderr)
        return exit_code_for(err)
