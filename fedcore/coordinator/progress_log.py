"""A coordinator that says what it is doing: status lines in the log while nothing else is.

`ProgressLog` is a `ServerObserver` (see `fedcore.transport.grpc.observer`): on the server's
ticks it logs, at info level, how many clients have joined and how many a round needs while
the coordinator waits (again every `every_s` seconds while nothing changes), when a round
starts, and every `every_s` seconds how the open round stands. (Each closed round's line comes from the server itself.)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STATUS_EVERY_S = 15.0
WAITING = "waiting"
WORKING = ("training", "evaluating")
INITIALIZING = "initializing"
MIN_GAP_S = 1.0  # at most one line a second, however fast clients come


class ProgressLog:
    """Status lines for the operator.

    Args:
        num_rounds: rounds the run will do.
        min_clients: clients that must have joined before a round starts.
        phase: returns the engine's phase ("waiting", "training", ..., "done").
        rounds_done: rounds completed before (a resumed run).
        every_s: how often an unchanged state is said again.
        clock: monotonic time.
        logger: where the lines go.
    """

    def __init__(
        self,
        *,
        num_rounds: int,
        min_clients: int,
        phase: Callable[[], str],
        rounds_done: int = 0,
        every_s: float = STATUS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._num_rounds = num_rounds
        self._min_clients = min_clients
        self._phase = phase
        self._every_s = every_s
        self._clock = clock
        self._log = logger
        self._said: tuple[object, ...] | None = None
        self._said_at = -math.inf
        self._round = rounds_done

    def engine_ticked(self, *, connected: int, outstanding: int, round_number: int) -> None:
        """Log the state when it changed, or when it was last said `every_s` ago."""
        phase = self._phase()
        if phase in WORKING and round_number != self._round:
            self._round = round_number
            self._log.info("round %d of %d started: %d clients selected, %d connected",
                           round_number, self._num_rounds, outstanding, connected)
            self._remember((phase, round_number))
            return
        # While waiting, a new count is news; in a round, the count of results is said only
        # every `every_s` (it changes with every result).
        state = (phase, connected) if phase == WAITING else (phase, round_number)
        since = self._clock() - self._said_at
        if since < (MIN_GAP_S if state != self._said else self._every_s):
            return
        if phase == WAITING:
            self._log.info(self._waiting_line(connected))
        elif phase in WORKING:
            self._log.info("round %d of %d %s: %d selected clients still working, %d connected",
                           round_number, self._num_rounds, phase, outstanding, connected)
        elif phase == INITIALIZING:
            self._log.info("asking a client for the initial model (no --initial-model given)")
        else:
            return
        self._remember(state)

    def _waiting_line(self, connected: int) -> str:
        if self._round >= 1:
            return (f"waiting for clients: {connected} connected, round {self._round + 1} "
                    f"starts with {self._min_clients}")
        return (f"waiting for clients: {connected} of {self._min_clients} joined (rounds start "
                f"at {self._min_clients}: --min-clients, [rounds] min_available)")

    def _remember(self, state: tuple[object, ...]) -> None:
        self._said = state
        self._said_at = self._clock()
