"""The exit statuses of `fedcore` commands, and which error means which."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a `fedcore` process's exit status means (listed in `fedcore --help`)."""

    OK = 0
    """The command did what it was asked (a run finished, a probe found the server serving)."""
    FAILED = 1
    """It failed while running: the coordinator unreachable or not serving, an error mid-run."""
    USAGE = 2
    """It did not start: a bad flag, configuration key or value, or an address it cannot use."""
    REFUSED = 3
    """A refusal, not a fault: the coordinator refused this client (token, roster), or the
    client declined every task it was offered (its privacy floor or budget)."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C."""


EPILOG = """exit status:
  0  success: the run finished (a client: it did at least one task; health: SERVING)
  1  failure while running: coordinator unreachable or not serving, an error mid-run
  2  did not start: a bad flag, configuration key or value, or an unusable address
  3  refused: the coordinator refused this client (token, roster), or the client
     declined every task it was offered (privacy floor or budget)"""


def exit_code_for(err: BaseException) -> ExitCode:
    """The exit status for an error that ended a command."""
    from fedcore.client.connection_errors import ClientRejected
    from fedcore.client.loop import ClientError

    if isinstance(err, ClientError) and isinstance(err.__cause__, ClientRejected):
        return ExitCode.REFUSED
    if isinstance(err, ValueError):
        return ExitCode.USAGE
    return ExitCode.FAILED
