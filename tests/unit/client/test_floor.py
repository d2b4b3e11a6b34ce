"""The client's privacy floor: weaker tasks are declined for good, with the reason, untrained."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.cli import build_parser, main
from fedcore.cli.commands import privacy_floor as floor_from_args
from fedcore.client import ClientOptions, DeclineTask, FitResult, PrivacyFloor, TaskHandler
from fedcore.client.floor import round_epsilon
from fedcore.client.loop import ClientLoop
from fedcore.client.torch_app import TorchApp
from fedcore.dp.secure_random import is_secure
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.messages import LocalDPConfig, SecAggSetup, Task, TaskKind, TrainConfig
from fedcore.protocol.params import Params
from fedcore.protocol.specs import spec_of
from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.secagg.messages import AdvertiseKeys
from fedcore.secagg.roster import Roster, SecAggIdentity, public_key

from .conftest import MODEL, FakeConnection, make_app

PARTICIPANTS = ("me", "b", "c")


class Recorder:
    """A fit function that notes every call (the floor must decline before any)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, params: Params, config: TrainConfig) -> FitResult:
        self.calls += 1
        return FitResult(params={k: v + 1 for k, v in params.items()}, num_examples=5)


def _task(*, local_dp: LocalDPConfig | None = None, setup: SecAggSetup | None = None) -> Task:
    return Task(round=1, task_id="t1", kind=TaskKind.TRAIN, model_spec=spec_of(MODEL),
                train=TrainConfig(local_dp=local_dp), secagg=setup)


def _setup(*, dp: DistributedDPConfig | None = None, signed: bool = False) -> SecAggSetup:
    spec = RoundSpec(config=SecAggConfig(threshold=3, max_clients=10, clip=1.0), round_id=1,
                     num_clients=3, dim=4)  # the 3 model values and the weight slot
    return SecAggSetup(client=1, spec=spec, weight_cap=10.0, distributed_dp=dp,
                       participants=PARTICIPANTS if signed else ())


def _identity() -> SecAggIdentity:
    keys = {cid: Ed25519PrivateKey.generate() for cid in PARTICIPANTS}
    return SecAggIdentity("me", keys["me"], Roster({c: public_key(k) for c, k in keys.items()}))


def _handle(task: Task, floor: PrivacyFloor, *, identity: SecAggIdentity | None = None,
            ) -> tuple[Recorder, object]:
    fit = Recorder()
    handler = TaskHandler(make_app(fit), "me", identity=identity, floor=floor)
    return fit, handler.handle(task, {k: v.copy() for k, v in MODEL.items()})


def _declined(result: object, fit: Recorder, reason: str) -> None:
    header = result.header  # type: ignore[attr-defined]
    assert fit.calls == 0, "trained although the task is below the floor"
    assert header.permanent
    assert reason in header.declined_reason
    assert header.declined_reason.startswith("privacy floor: ")


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        (_task(local_dp=LocalDPConfig(noise_multiplier=0.1)),
         "local DP-SGD noise multiplier 0.1 is below this client's minimum 0.5"),
        (_task(setup=_setup(dp=DistributedDPConfig(noise_multiplier=0.01, clip_norm=1.0))),
         "distributed DP noise multiplier 0.01 is below this client's minimum 0.5"),
        (_task(local_dp=LocalDPConfig(target_epsilon=100.0, planned_rounds=10)),
         "local DP-SGD target epsilon 100 is above this client's maximum 10"),
        (_task(local_dp=LocalDPConfig(noise_multiplier=1.0, delta=1e-3)),
         "local DP-SGD delta 0.001 is above this client's maximum 1e-05"),
        (_task(setup=_setup(dp=DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0,
                                                   delta=0.1))),
         "distributed DP delta 0.1 is above"),
    ],
    ids=["local-noise", "distributed-noise", "local-target-epsilon", "local-delta",
         "distributed-delta"],
)
def test_the_default_floor_declines_weak_parameters_without_training(task: Task, reason: str,
                                                                     ) -> None:
    fit, result = _handle(task, PrivacyFloor())

    _declined(result, fit, reason)


def test_a_distributed_round_whose_epsilon_passes_the_floor_is_declined() -> None:
    setup = _setup(dp=DistributedDPConfig(noise_multiplier=0.7, clip_norm=1.0))
    eps = round_epsilon(setup.distributed_dp, setup)  # type: ignore[arg-type]
    assert 6 < eps < 8  # the floor below sits between this and the default

    fit, result = _handle(_task(setup=setup), PrivacyFloor(max_epsilon=5.0))

    _declined(result, fit, f"one distributed-DP round costs epsilon {eps:.3g}")


def test_an_unsigned_round_is_declined_when_signed_rounds_are_required() -> None:
    fit, result = _handle(_task(setup=_setup()), PrivacyFloor(require_signed=True),
                          identity=_identity())

    _declined(result, fit, "the secure-aggregation round is unsigned")


@pytest.mark.parametrize("floor", [PrivacyFloor(require_secure_aggregation=True),
                                   PrivacyFloor(require_signed=True)])
def test_a_task_without_secure_aggregation_is_declined_when_required(floor: PrivacyFloor,
                                                                     ) -> None:
    fit, result = _handle(_task(), floor, identity=_identity())

    _declined(result, fit, "without secure aggregation")


@pytest.mark.parametrize(
    "task",
    [
        _task(),
        _task(local_dp=LocalDPConfig(noise_multiplier=0.5)),
        _task(local_dp=LocalDPConfig(target_epsilon=10.0, planned_rounds=5)),
    ],
    ids=["no-dp", "local-at-the-floor", "target-at-the-floor"],
)
def test_a_task_meeting_the_floor_trains(task: Task) -> None:
    fit, result = _handle(task, PrivacyFloor())

    assert fit.calls == 1
    assert not result.header.declined_reason  # type: ignore[attr-defined]


def test_a_distributed_round_meeting_the_floor_trains_and_masks() -> None:
    setup = _setup(dp=DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0))

    fit, result = _handle(_task(setup=setup), PrivacyFloor(require_secure_aggregation=True))

    assert fit.calls == 1
    assert isinstance(result.header.secagg, AdvertiseKeys)  # type: ignore[attr-defined]


def test_without_a_floor_the_handler_trains_whatever_is_sent() -> None:
    fit = Recorder()
    handler = TaskHandler(make_app(fit), "me")

    handler.handle(_task(local_dp=LocalDPConfig(noise_multiplier=0.01)), dict(MODEL))

    assert fit.calls == 1


def test_require_signed_without_an_identity_fails_at_start() -> None:
    with pytest.raises(ValueError, match="pass secagg_identity"):
        TaskHandler(make_app(), "me", floor=PrivacyFloor(require_signed=True))


def test_a_bad_floor_names_the_field() -> None:
    with pytest.raises(ValueError, match="max_delta"):
        PrivacyFloor(max_delta=1.0)


# ----------------------------------------------------------------- the loop


class CountingConnection(FakeConnection):
    downloads: int = 0

    def download(self, task: Task, stop: threading.Event | None = None) -> dict[str, np.ndarray]:
        self.downloads += 1
        return super().download(task, stop)


def test_a_client_declines_the_reviewers_noise_multiplier_before_downloading() -> None:
    # The review's case: the coordinator sent noise multiplier 0.01 and the client trained.
    task = _task(setup=_setup(dp=DistributedDPConfig(noise_multiplier=0.01, clip_norm=1.0)))
    conn = CountingConnection(replies=[task])
    fit = Recorder()

    ClientLoop(make_app(fit), conn, stop=threading.Event(), options=ClientOptions()).run()

    assert fit.calls == 0 and conn.downloads == 0
    [decline] = conn.submitted
    assert decline.header.permanent
    assert "distributed DP noise multiplier 0.01" in decline.header.declined_reason


# ----------------------------------------------------------------- TorchApp's accountant


def _torch_app(*, budget: float | None = None, secure_rng: bool = False) -> TorchApp:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=gen), torch.randint(0, 2, (60,), generator=gen)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)  # 6 batches: sample rate 1/6
    return TorchApp(nn.Linear(4, 2), train_loader=loader, privacy_budget=budget,
                    secure_rng=secure_rng)


def _params(app: TorchApp) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in app.get_parameters().items()}


def _handle_torch(app: TorchApp, config: TrainConfig, floor: PrivacyFloor) -> object:
    before = _params(app)
    task = Task(round=1, task_id="t1", kind=TaskKind.TRAIN, train=config,
                model_spec=spec_of(before))
    result = TaskHandler(app, "me", floor=floor).handle(task, before)
    return result


def test_a_derived_noise_multiplier_below_the_floor_is_declined_untrained() -> None:
    app = _torch_app()
    before = _params(app)
    config = TrainConfig(local_dp=LocalDPConfig(target_epsilon=9.0, planned_rounds=1))
    plan = app.plan_local_dp(config)
    assert plan is not None and plan.noise_multiplier < 0.7

    result = _handle_torch(app, config, PrivacyFloor(min_noise_multiplier=0.7))

    assert result.header.permanent  # type: ignore[attr-defined]
    assert "(derived from the task's target epsilon)" in result.header.declined_reason  # type: ignore[attr-defined]
    assert app.accountant.steps == 0
    assert all(np.array_equal(v, before[k]) for k, v in app.get_parameters().items())


def test_an_accountant_that_would_pass_max_epsilon_declines_untrained() -> None:
    app = _torch_app()
    config = TrainConfig(local_epochs=30, local_dp=LocalDPConfig(noise_multiplier=0.6))

    result = _handle_torch(app, config, PrivacyFloor())

    reason = result.header.declined_reason  # type: ignore[attr-defined]
    assert result.header.permanent  # type: ignore[attr-defined]
    assert "would raise this client's epsilon from 0.000 to 49.997" in reason
    assert app.accountant.steps == 0


def test_a_dp_task_within_the_floor_trains_and_spends() -> None:
    app = _torch_app()

    result = _handle_torch(app, TrainConfig(local_dp=LocalDPConfig(noise_multiplier=1.0)),
                           PrivacyFloor())

    assert not result.header.declined_reason  # type: ignore[attr-defined]
    assert app.accountant.steps == 6


@pytest.mark.parametrize(("budget", "declined"), [(0.5, True), (8.0, False)])
def test_the_smaller_of_budget_and_target_is_the_limit(budget: float, declined: bool) -> None:
    app = _torch_app(budget=budget)
    before = _params(app)
    # target 100 over 193 planned rounds: this one task alone would raise epsilon to ~7.1
    config = TrainConfig(local_dp=LocalDPConfig(target_epsilon=100.0, planned_rounds=193))
    plan = app.plan_local_dp(config)
    assert plan is not None and f"{plan.epsilon_after:.1f}" == "7.1"

    if declined:
        with pytest.raises(DeclineTask) as refusal:
            app.fit(before, config)
        assert refusal.value.permanent
        assert "to 7.1" in refusal.value.reason and "budget of 0.5" in refusal.value.reason
        assert app.accountant.steps == 0
        assert all(np.array_equal(v, before[k]) for k, v in app.get_parameters().items())
    else:
        app.fit(before, config)
        assert app.accountant.steps == 6


# ----------------------------------------------------------------- secure randomness


def test_secure_rng_gives_the_secure_session_a_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    import fedcore.client.handler as handler_module

    seen: list[object] = []
    real = handler_module.start_secure

    def spy(*args: object) -> object:
        seen.append(args[-1])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(handler_module, "start_secure", spy)
    for secure in (True, False):
        handler = TaskHandler(make_app(), "me", secure_rng=secure)
        handler.handle(_task(setup=_setup()), dict(MODEL))

    assert isinstance(seen[0], np.random.Generator) and is_secure(seen[0])
    assert seen[1] is None  # the default: PCG64 seeded from `secrets` in the session


def test_secure_rng_refuses_an_app_whose_dp_sgd_is_not_secure() -> None:
    with pytest.raises(ValueError, match=r"TorchApp\(\.\.\., secure_rng=True\)"):
        TaskHandler(_torch_app(), "me", secure_rng=True)

    TaskHandler(_torch_app(secure_rng=True), "me", secure_rng=True)  # agreed: fine


# ----------------------------------------------------------------- the CLI


def _client_args(*extra: str) -> list[str]:
    return ["client", "--server", "x:1", "--partition", "0", "--num-partitions", "2", *extra]


def test_cli_flags_set_the_floor_and_defaults_match_the_sdk() -> None:
    parser = build_parser()

    default = floor_from_args(parser.parse_args(_client_args()))
    custom = floor_from_args(parser.parse_args(_client_args(
        "--min-noise-multiplier", "0.8", "--max-epsilon", "3", "--max-delta", "1e-6",
        "--require-secure-aggregation")))

    assert default == PrivacyFloor()
    assert custom == PrivacyFloor(min_noise_multiplier=0.8, max_epsilon=3.0, max_delta=1e-6,
                                  require_secure_aggregation=True)
    assert floor_from_args(parser.parse_args(_client_args("--no-privacy-floor"))) is None
    assert parser.parse_args(_client_args("--secure-rng")).secure_rng


def test_cli_require_signed_without_a_key_fails_at_start(capsys: pytest.CaptureFixture[str],
                                                         ) -> None:
    assert main(_client_args("--require-signed")) == 2
    assert "--require-signed needs --secagg-key" in capsys.readouterr().err


def test_cli_a_bad_floor_value_fails_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_client_args("--max-epsilon", "-1")) == 2
    assert "max_epsilon" in capsys.readouterr().err


def test_infinite_max_epsilon_means_no_cap() -> None:
    setup = _setup(dp=DistributedDPConfig(noise_multiplier=0.5, clip_norm=1.0))

    fit, _ = _handle(_task(setup=setup), replace(PrivacyFloor(), max_epsilon=math.inf))

    assert fit.calls == 1
