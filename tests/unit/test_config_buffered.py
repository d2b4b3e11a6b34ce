"""[buffered]: FedBuff instead of rounds, read from TOML (defaults, bad values, unknown keys) and
the combinations refused at start."""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcore.config import BufferedSection, ConfigError, load_config
from fedcore.engine.buffered import BufferedConfig
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.plan import build_buffered
from fedcore.sim.config import load_simulation_config
from fedcore.strategy.server_opt import ServerOptimizer


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_no_table_means_rounds_and_an_empty_table_means_fedbuff_with_the_engine_defaults(
        tmp_path: Path) -> None:
    # the engine's defaults, except that an operator's run evaluates every version (the
    # library's engine evaluates only when asked)
    operator = dataclasses.replace(BufferedConfig(), eval_every=1)
    assert load_config(None).run.buffered is None
    assert load_config(_file(tmp_path, "[buffered]\n")).run.buffered == operator
    assert BufferedSection().config() == operator
    off = load_config(_file(tmp_path, "[buffered]\neval_every = 0\n")).run.buffered
    assert off == BufferedConfig()


def test_keys_and_flags_set_the_engine(tmp_path: Path) -> None:
    path = _file(tmp_path, "[buffered]\nbuffer_size = 3\nconcurrency = 5\nmax_staleness = 2\n"
                           "staleness_exponent = 0\ntask_timeout_s = 30\n")

    plan = load_config(path, {"buffered": {}, "buffered.num_updates": 7})

    assert plan.run.buffered == BufferedConfig(buffer_size=3, concurrency=5, num_updates=7,
                                               max_staleness=2, staleness_exponent=0.0,
                                               task_timeout_s=30.0, eval_every=1)


@pytest.mark.parametrize(("text", "message"), [
    ("buffer_size = 0", "[buffered]: buffer_size must be >= 1"),
    ("buffer_size = 4\nconcurrency = 2", "concurrency (2) must be >= buffer_size (4)"),
    ("task_timeout_s = -1", "task_timeout_s must be > 0"),
    ("staleness_exponent = -0.5", "staleness_exponent must be >= 0"),
    ("max_staleness = -1", "max_staleness must be >= 0"),
    ("buffer_size = \"ten\"", "buffered.buffer_size must be int"),
    ("buffer_sise = 3", "unknown key(s) buffered.buffer_sise"),
])
def test_bad_values_and_unknown_keys_fail_naming_the_key(tmp_path: Path, text: str,
                                                          message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_file(tmp_path, f"[buffered]\n{text}\n"))

    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"secagg.enabled": True, "secagg.dp.noise_multiplier": 1.0, "secagg.dp.clip_norm": 1.0},
     "[buffered] with [secagg.dp]"),
    ({"secagg.enabled": True, "buffered.buffer_size": 1, "buffered.concurrency": 1},
     "buffer_size >= 2"),
    ({"strategy.name": "scaffold", "strategy.num_clients": 10}, "SCAFFOLD"),
    ({"strategy.robust.aggregator": "median"}, "aggregator = 'mean'"),
    ({"strategy.robust.aggregator": "norm_bound", "strategy.name": "fedadam"}, "'norm_bound'"),
    ({"privacy.user.noise_multiplier": 1.0, "privacy.user.population": 100,
      "rounds.clients_per_round": 10}, "[buffered] with [privacy.user]"),
    ({"privacy.local.target_epsilon": 5.0}, "privacy.local.noise_multiplier instead"),
    ({"rounds.num_rounds": 3}, "rounds.num_rounds: [buffered] runs without rounds"),
    ({"rounds.round_timeout_s": 9.0, "rounds.fraction": 0.5},
     "rounds.fraction, rounds.round_timeout_s"),
])
def test_what_cannot_run_buffered_is_refused_at_start(tmp_path: Path, overrides: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_file(tmp_path, "[buffered]\n"), overrides)

    assert message in str(caught.value)


def test_server_optimizers_and_local_dp_noise_run_buffered(tmp_path: Path) -> None:
    plan = load_config(_file(tmp_path, "[buffered]\n[strategy]\nname = \"fedyogi\"\n"
                                       "[privacy.local]\nnoise_multiplier = 1.0\n"
                                       "[rounds]\nclient_timeout_s = 30\n"))

    assert isinstance(plan.run.strategy, ServerOptimizer) and plan.run.buffered is not None


@pytest.mark.parametrize(("text", "message"), [
    ("[compression]\nenabled = true\nkind = \"topk\"\nfraction = 0.1\n", "[compression]"),
    ("[stragglers]\nfraction = 0.2\n", "stragglers.fraction"),
])
def test_simulation_sections_of_rounds_are_refused_with_buffered(tmp_path: Path, text: str,
                                                                  message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_simulation_config(_file(tmp_path, "[buffered]\n" + text))


def test_secagg_with_buffered_makes_each_buffer_a_secure_group(tmp_path: Path) -> None:
    plan = load_config(_file(tmp_path, "[buffered]\nbuffer_size = 4\nconcurrency = 8\n"
                                       "[secagg]\nenabled = true\n"))

    engine = build_buffered(plan.run, initial_params={"w": np.zeros(3, np.float32)})

    assert isinstance(engine, SecureBufferedEngine) and engine.secure == plan.run.engine.secagg
    restored = build_buffered(plan.run, snapshot=engine.snapshot())
    assert isinstance(restored, SecureBufferedEngine) and restored.version == 0
