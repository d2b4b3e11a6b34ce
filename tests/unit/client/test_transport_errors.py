"""The loop acts on what a failed call means (typed transport errors), never on status codes."""

from __future__ import annotations

import threading

import pytest

from fedcore.client import ClientError, ClientOptions, ClientPhase
from fedcore.client.loop import ClientLoop
from fedcore.protocol.messages import TaskReply
from fedcore.client.connection_errors import (
    ClientRejected,
    Disconnected,
    SessionLost,
    TransportError,
    Unreachable,
)

from .conftest import FakeConnection, make_app, train_task

pytestmark = pytest.mark.timeout(30)


def failing(err: Exception):
    def reply() -> TaskReply:
        raise err

    return reply


def loop_over(conn: FakeConnection, **options: object) -> ClientLoop:
    return ClientLoop(make_app(), conn, stop=threading.Event(), options=ClientOptions(**options))


def test_a_lost_session_joins_again_and_the_run_goes_on() -> None:
    conn = FakeConnection([failing(SessionLost("NOT_FOUND", "unknown session")), train_task(1)])

    summary = loop_over(conn).run()

    assert conn.joins == 2 and summary.tasks_completed == 1 and summary.finished
    assert summary.last_error == "NOT_FOUND: unknown session"


def test_a_disconnect_backs_off_counts_a_reconnect_and_joins_again() -> None:
    conn = FakeConnection([failing(Disconnected("UNAVAILABLE", "connection refused"))])

    summary = loop_over(conn).run()

    assert summary.reconnects == 1 and conn.joins == 2 and summary.finished


def test_a_transient_failure_keeps_the_session() -> None:
    conn = FakeConnection([failing(Unreachable("DEADLINE_EXCEEDED", "slow"))])

    summary = loop_over(conn).run()

    assert summary.reconnects == 1 and conn.joins == 1 and summary.finished


def test_a_rejected_client_stops_with_client_error() -> None:
    conn = FakeConnection([failing(ClientRejected("PERMISSION_DENIED", "not on the list"))])
    loop = loop_over(conn)

    with pytest.raises(ClientError, match="not on the list"):
        loop.run()

    assert loop.status().phase is ClientPhase.FAILED and conn.closed


def test_unreachable_past_max_reconnect_s_stops_with_client_error() -> None:
    conn = FakeConnection([failing(Unreachable("UNAVAILABLE", "down"))] * 3)

    with pytest.raises(ClientError, match="unreachable"):
        loop_over(conn, max_reconnect_s=0.01).run()


def test_any_other_failure_is_logged_and_the_loop_goes_on() -> None:
    conn = FakeConnection([failing(TransportError("UNIMPLEMENTED", "old coordinator"))])

    summary = loop_over(conn).run()

    assert summary.finished and summary.last_error == "UNIMPLEMENTED: old coordinator"
