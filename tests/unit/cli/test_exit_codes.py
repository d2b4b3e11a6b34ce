"""Exit statuses tell success, failure, a start-up error and a refusal apart."""

from __future__ import annotations

from fedcore.cli.exits import ExitCode, exit_code_for
from fedcore.client.connection_errors import ClientRejected, Disconnected
from fedcore.client.loop import ClientError
from fedcore.config import ConfigError


def raised(err: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise err from cause
    except BaseException as caught:  # noqa: BLE001 - the test inspects it
        return caught


def test_the_four_outcomes_have_distinct_statuses() -> None:
    assert len({ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.REFUSED}) == 4


def test_a_client_the_coordinator_refused_is_a_refusal() -> None:
    err = raised(ClientError("coordinator refused this client: wrong token"),
                 ClientRejected("UNAUTHENTICATED", "wrong or missing auth token"))

    assert exit_code_for(err) is ExitCode.REFUSED


def test_an_unreachable_coordinator_is_a_failure() -> None:
    err = raised(ClientError("coordinator unreachable for 300s"),
                 Disconnected("UNAVAILABLE", "connection refused"))

    assert exit_code_for(err) is ExitCode.FAILED


def test_a_bad_configuration_is_a_start_up_error() -> None:
    assert exit_code_for(ConfigError("rounds.fraction must be in (0, 1]")) is ExitCode.USAGE


def test_an_error_mid_run_is_a_failure() -> None:
    assert exit_code_for(RuntimeError("coordinator stopped")) is ExitCode.FAILED
