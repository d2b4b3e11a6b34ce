"""Eligibility: a client whose predicate says no takes no work, and the coordinator selects
others; once it says yes, the client joins and is selected again."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fedcore.client import BackgroundClient, Callbacks, ClientPhase, FitResult, FunctionalApp
from fedcore.engine import EngineConfig, SelectionConfig

pytestmark = pytest.mark.timeout(60)


def app(on_fit=lambda: None) -> FunctionalApp:
    def fit(params, config):
        on_fit()
        return FitResult(params={"w": params["w"] + 1}, num_examples=1)

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(2, np.float32)}, fit=fit)


def test_ineligible_client_takes_no_work_and_the_coordinator_selects_others(start_coordinator):
    # arrange: one client per round; the first client to connect is never eligible
    config = EngineConfig(num_rounds=3, train=SelectionConfig(count=1), evaluate=None)
    server = start_coordinator(config, {"w": np.zeros(2, np.float32)})
    address = f"127.0.0.1:{server.port}"
    asked = threading.Semaphore(0)

    def never() -> bool:
        asked.release()
        return False

    idle = BackgroundClient(app(), address, client_id="on-battery", eligible=never,
                            eligibility_check_s=0.02)
    busy = BackgroundClient(app(), address, client_id="plugged-in")

    # act
    idle.start()
    for _ in range(3):  # it was asked, and said no, several times before anyone else came
        asked.acquire()
    busy.start()
    assert server.wait(30)
    busy.wait(10)

    # assert
    assert [r.status for r in server.engine.records] == ["ok"] * 3
    assert busy.summary is not None and busy.summary.rounds == [1, 2, 3]
    status = idle.status
    assert (status.phase, status.tasks_selected, status.tasks_trained) == (ClientPhase.IDLE, 0, 0)
    assert idle.stop(timeout=10)


def test_client_becoming_eligible_joins_and_is_selected(start_coordinator):
    # arrange: every available client trains; "late" becomes eligible after round 2
    config = EngineConfig(num_rounds=4, train=SelectionConfig(fraction=1.0), evaluate=None)
    server = start_coordinator(config, {"w": np.zeros(2, np.float32)})
    address = f"127.0.0.1:{server.port}"
    allowed = threading.Event()
    late = BackgroundClient(app(), address, client_id="late", eligible=allowed.is_set,
                            eligibility_check_s=0.02)

    def hold_round_3_until_late_waits() -> None:  # so that round 4 sees both clients
        if allowed.is_set():
            while late.status.phase is not ClientPhase.WAITING and late.status.last_round < 4:
                threading.Event().wait(0.01)

    def after_report(event) -> None:
        if event.round == 2:
            allowed.set()

    early = BackgroundClient(app(hold_round_3_until_late_waits), address, client_id="early",
                             callbacks=Callbacks(on_reported=after_report))

    # act
    late.start()
    early.start()
    assert server.wait(30)
    early.wait(10)
    late.wait(10)

    # assert
    assert [r.clients_selected for r in server.engine.records[:2]] == [1, 1]
    assert server.engine.records[3].clients_selected == 2
    assert late.summary is not None and 4 in late.summary.rounds
    assert not {1, 2} & set(late.summary.rounds)
    assert early.stop(timeout=10) and late.stop(timeout=10)
