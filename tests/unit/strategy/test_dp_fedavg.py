"""DP-FedAvg: server-side clipping, noise on the sum, user-level ε, adaptive clip state."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from fedcore.aggregate.dp_noise import AdaptiveClipping
from fedcore.storage.checkpoints import load_checkpoint, save_checkpoint
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.strategy.base import StatefulStrategy
from fedcore.protocol.params import Array, global_norm
from fedcore.strategy.base import SampledStrategy, Sampling
from fedcore.strategy.dp_fedavg import DPFedAvg

PARAMS = {"w": np.zeros(4, np.float32), "b": np.zeros((), np.float32)}


def updates(n: int, scale: float, seed: int = 0) -> list[dict[str, Array]]:
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(0, scale, 4).astype(np.float32),
             "b": np.asarray(rng.normal(0, scale), np.float32)} for _ in range(n)]


def release(strategy: DPFedAvg, batch: list[dict[str, Array]],  # type: ignore[no-untyped-def]
            sampling: Sampling | None = None):
    """One round as the engine runs it; by default m of the N declared clients were drawn."""
    sampling = sampling or Sampling(selected=strategy.clients_per_round,
                                    available=strategy.population)
    agg = strategy.sampled_aggregator(1, sampling)
    for u in batch:
        agg.add({k: v.copy() for k, v in u.items()}, 100.0)
    return agg.result()


def make(**kw: object) -> DPFedAvg:
    settings: dict[str, object] = dict(noise_multiplier=1.0, clip_norm=1.0, clients_per_round=10,
                                       population=1000, rng=np.random.default_rng(0))
    settings.update(kw)
    return DPFedAvg(**settings)  # type: ignore[arg-type]


class Recorder:
    """Inner double for the clip bound: remembers every update that reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Array]] = []

    def add(self, update: dict[str, Array], weight: float) -> None:
        self.seen.append({k: v.copy() for k, v in update.items()})


def test_every_update_reaching_the_sum_respects_the_clip_norm() -> None:
    # arrange: watch what the strategy's Clip hands its inner aggregator
    strategy = make(clip_norm=0.5)
    agg = strategy.aggregator(1)
    recorder = Recorder()
    agg._clip._inner = recorder  # type: ignore[attr-defined]

    for u in updates(50, scale=3.0):
        agg.add(u, 1.0)

    assert len(recorder.seen) == 50
    assert max(global_norm(u) for u in recorder.seen) <= 0.5


def test_noise_std_on_the_mean_is_z_c_over_m_over_many_seeded_rounds() -> None:
    # arrange: zero updates, so the released mean is the noise alone; 20 rounds x 2000 coordinates
    strategy = make(noise_multiplier=1.3, clip_norm=0.7, clients_per_round=8)
    zero = [{"w": np.zeros(2000, np.float32)} for _ in range(8)]

    draws = np.concatenate([release(strategy, zero).update["w"] for _ in range(20)])

    expected = 1.3 * 0.7 / 8
    assert abs(draws.mean()) < 4 * expected / np.sqrt(draws.size)
    assert draws.std() == pytest.approx(expected, rel=0.02)  # ~4 sigma of the estimate


def test_the_denominator_is_the_expected_count_not_the_received_one() -> None:
    strategy = make(noise_multiplier=1e-9, clients_per_round=10)
    one = [{"w": np.full(4, 0.1, np.float32), "b": np.asarray(0.1, np.float32)}] * 5

    result = release(strategy, one)

    np.testing.assert_allclose(result.update["w"], 5 * 0.1 / 10, rtol=1e-5)


def test_user_epsilon_equals_opacus_rdp_accountant_after_each_round() -> None:
    strategy = make(noise_multiplier=1.1, clients_per_round=20, population=2000, delta=1e-5)
    reported = [release(strategy, updates(20, 0.1, seed=r)).measurements["user_epsilon"]
                for r in range(5)]

    expected = []
    for rounds in range(1, 6):
        acc = RDPAccountant()
        acc.history = [(1.1, 20 / 2000, rounds)]
        expected.append(acc.get_epsilon(delta=1e-5))
    assert reported == pytest.approx(expected, rel=1e-12)
    assert strategy.rounds_released == 5


def test_measurements_carry_clip_noise_and_no_exact_statistics() -> None:
    strategy = make(noise_multiplier=2.0, clip_norm=0.25)

    m = release(strategy, updates(10, 1.0)).measurements

    assert m["clip_norm"] == 0.25 and m["noise_std"] == pytest.approx(0.5)
    assert "clipped_fraction" not in m and "mean_update_norm" not in m


def test_target_epsilon_is_spent_after_the_planned_rounds() -> None:
    strategy = DPFedAvg.for_target_epsilon(target_epsilon=4.0, rounds=3, clip_norm=1.0,
                                           clients_per_round=50, population=500,
                                           rng=np.random.default_rng(0))
    for r in range(3):
        eps = release(strategy, updates(50, 0.1, seed=r)).measurements["user_epsilon"]

    assert eps == pytest.approx(4.0, rel=0.02) and eps <= 4.0 + 1e-9


def test_adaptive_clip_moves_toward_the_target_quantile() -> None:
    # arrange: update norms ~ 0.2·sqrt(5) ≈ 0.45 (median); start far above and far below
    config = AdaptiveClipping(count_noise_std=2.5, target_quantile=0.5, learning_rate=1.0)
    high = make(noise_multiplier=1.0, clip_norm=3.0, adaptive=config, clients_per_round=50)
    low = make(noise_multiplier=1.0, clip_norm=0.05, adaptive=config, clients_per_round=50)

    for r in range(12):
        batch = updates(50, 0.2, seed=r)
        release(high, batch)
        release(low, batch)

    assert 0.3 < high.clip_norm < 0.7 and 0.3 < low.clip_norm < 0.7


def test_adaptive_clipping_lowers_the_update_noise_and_accounts_the_total() -> None:
    strategy = make(noise_multiplier=1.0, adaptive=AdaptiveClipping(count_noise_std=2.0))

    m = release(strategy, updates(10, 0.1)).measurements

    # z_Δ = (1 - (2·2)^-2)^(-1/2)
    assert strategy.update_noise_multiplier == pytest.approx((1 - 1 / 16) ** -0.5)
    assert m["user_epsilon"] == pytest.approx(_eps(1.0, 10 / 1000, 1))
    assert m["next_clip_norm"] == strategy.clip_norm


def _eps(z: float, q: float, rounds: int) -> float:
    acc = RDPAccountant()
    acc.history = [(z, q, rounds)]
    return float(acc.get_epsilon(delta=1e-5))


def test_clip_state_survives_a_checkpoint_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # arrange: three adaptive rounds move the clip norm
    config = AdaptiveClipping(count_noise_std=1.0)
    strategy = make(clip_norm=5.0, adaptive=config, clients_per_round=20)
    for r in range(3):
        release(strategy, updates(20, 0.2, seed=r))
    assert isinstance(strategy, StatefulStrategy)

    path = save_checkpoint(tmp_path, EngineSnapshot(round=3, task_seq=3, params=PARAMS,
                                                    strategy_state=strategy.state_arrays()))
    restored = make(clip_norm=5.0, adaptive=config, clients_per_round=20)
    snapshot = load_checkpoint(tmp_path)
    assert snapshot is not None and path.exists()
    restored.load_state_arrays(snapshot.strategy_state)

    assert restored.clip_norm == strategy.clip_norm != 5.0
    assert restored.rounds_released == 3
    assert restored.epsilon() == strategy.epsilon()


def test_the_accounting_history_survives_a_checkpoint_with_each_rounds_own_rate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # arrange: three rounds at three different real rates, then a restart with another z
    strategy = make(noise_multiplier=1.0, clients_per_round=10, population=1000)
    for selected, available in ((10, 1000), (15, 1000), (15, 40)):
        release(strategy, updates(10, 0.1), Sampling(selected=selected, available=available))
    save_checkpoint(tmp_path, EngineSnapshot(round=3, task_seq=3, params=PARAMS,
                                             strategy_state=strategy.state_arrays()))
    snapshot = load_checkpoint(tmp_path)
    assert snapshot is not None
    restored = make(noise_multiplier=2.0, clients_per_round=10, population=1000)
    restored.load_state_arrays(snapshot.strategy_state)

    eps = release(restored, updates(10, 0.1), Sampling(selected=10, available=100)).measurements[
        "user_epsilon"]

    reference = RDPAccountant()
    for z, q in ((1.0, 0.01), (1.0, 0.015), (1.0, 15 / 40), (2.0, 0.1)):
        reference.step(noise_multiplier=z, sample_rate=q)
    assert eps == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12)
    assert restored.rounds_released == 4


def test_a_checkpoint_without_the_rates_of_its_released_rounds_is_refused() -> None:
    strategy = make()
    legacy = {"clip_norm": np.array(1.0), "rounds_released": np.array(3, np.int64)}

    with pytest.raises(ValueError, match="sampling rates"):
        strategy.load_state_arrays(legacy)
    assert strategy.rounds_released == 0


def test_the_engine_hook_is_recognised() -> None:
    assert isinstance(make(), SampledStrategy)


@pytest.mark.parametrize("selected, available, population, rate", [
    (15, 1000, 1000, 15 / 1000),   # over-selection: ceil(10 · 1.5) drawn, any may count
    (15, 40, 1000, 15 / 40),       # fewer available than declared: the observed pool
    (15, 1000, 100, 15 / 100),     # declared smaller than observed: the larger rate
    (40, 40, 1000, 1.0),           # everyone available was drawn
])
def test_each_round_is_accounted_at_the_rate_it_really_had(
        selected: int, available: int, population: int, rate: float) -> None:
    strategy = make(noise_multiplier=1.0, clients_per_round=10, population=population)

    m = release(strategy, updates(10, 0.1), Sampling(selected=selected, available=available)
                ).measurements

    assert m["user_sample_rate"] == rate
    assert m["user_epsilon"] == pytest.approx(_eps(1.0, rate, 1), rel=1e-12)


def test_a_round_whose_sampling_is_not_given_is_priced_at_rate_one() -> None:
    strategy = make(noise_multiplier=1.0, clients_per_round=10, population=1000)
    agg = strategy.aggregator(1)
    for u in updates(10, 0.1):
        agg.add(u, 1.0)

    m = agg.result().measurements

    assert m["user_sample_rate"] == 1.0
    assert m["user_epsilon"] == pytest.approx(_eps(1.0, 1.0, 1), rel=1e-12)


def test_a_round_is_released_once_however_often_its_result_is_read() -> None:
    strategy = make()
    agg = strategy.aggregator(1)
    for u in updates(3, 1.0):
        agg.add(u, 1.0)

    first, second = agg.result(), agg.result()

    assert first is second and strategy.rounds_released == 1


def test_apply_adds_the_noisy_mean_without_touching_the_inputs() -> None:
    strategy = make(noise_multiplier=1e-9, clients_per_round=1, population=10)
    params = {k: v.copy() for k, v in PARAMS.items()}
    result = release(strategy, [{"w": np.full(4, 0.1, np.float32), "b": np.asarray(0.0, np.float32)}])

    new = strategy.apply(params, result)

    np.testing.assert_allclose(new["w"], 0.1, rtol=1e-5)
    np.testing.assert_array_equal(params["w"], 0)


@pytest.mark.parametrize("bad", [dict(noise_multiplier=0.0), dict(clip_norm=-1.0),
                                 dict(clients_per_round=2000), dict(delta=1.0),
                                 dict(clients_per_round=800, over_selection=0.5)])
def test_bad_settings_fail_at_construction(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        make(**bad)


def _config(tmp_path, text: str):  # type: ignore[no-untyped-def]
    from fedcore.config import load_config

    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    return load_config(path)


def test_the_user_dp_section_builds_the_strategy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = _config(tmp_path, "[rounds]\nclients_per_round = 10\n[privacy.user]\n"
                               "noise_multiplier = 0.8\nclip_norm = 0.5\npopulation = 400\n"
                               "adaptive = true\n")

    strategy = config.run.strategy

    assert isinstance(strategy, DPFedAvg)
    assert (strategy.noise_multiplier, strategy.clip_norm, strategy.population) == (0.8, 0.5, 400)
    assert strategy.adaptive is not None and strategy.adaptive.count_noise_std == 0.5


@pytest.mark.parametrize("text, words", [
    ("[privacy.user]\nnoise_multiplier = 1.0\npopulation = 100\n", "clients_per_round"),
    ("[rounds]\nclients_per_round = 10\n[privacy.user]\npopulation = 100\n", "exactly one"),
    ("[rounds]\nclients_per_round = 10\n[privacy.user]\nnoise_multiplier = 1.0\n",
     "population"),
    ("[rounds]\nclients_per_round = 10\n[secagg]\nenabled = true\n[privacy.user]\n"
     "noise_multiplier = 1.0\npopulation = 100\n", "secure aggregation"),
    (("[rounds]\nclients_per_round = 10\nover_selection = 0.5\n[privacy.user]\n"
      "noise_multiplier = 1.0\npopulation = 12\n"), r"\[privacy\.user\].*over_selection=0.5 selects 15"),
])
def test_bad_user_dp_settings_fail_at_start_naming_the_section(tmp_path, text: str, words: str) -> None:  # type: ignore[no-untyped-def]
    from fedcore.config import ConfigError

    with pytest.raises(ConfigError, match=words):
        _config(tmp_path, text)
