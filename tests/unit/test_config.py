"""The coordinator's config tree: TOML read once into the domain dataclasses, one run plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fedcore.config import (
    ConfigError,
    LocalDPSection,
    PrivacyConfig,
    RoundsConfig,
    StrategyConfig,
    UserDPSection,
    load_config,
)
from fedcore.engine.config import EngineConfig, SecureAggregationConfig
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.protocol.messages import LocalDPConfig
from fedcore.secagg.config import Mode
from fedcore.strategy import FedAvg


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    return load_config(path)


def test_secagg_dp_table_loads_straight_into_the_distributed_dp_config(tmp_path: Path) -> None:
    plan = _load(tmp_path, "[secagg]\nenabled = true\n[secagg.dp]\nnoise_multiplier = 1.5\n"
                           'clip_norm = 0.5\nkind = "discrete_gaussian"\n')

    secagg = plan.run.engine.secagg

    assert secagg is not None and secagg.distributed_dp == DistributedDPConfig(
        noise_multiplier=1.5, clip_norm=0.5, kind=IntegerNoise.DISCRETE_GAUSSIAN)


@pytest.mark.parametrize("old, new", [("dp_noise_multiplier = 1.0", "secagg.dp.noise_multiplier"),
                                      ("dp_clip_norm = 1.0", "secagg.dp.clip_norm"),
                                      ('dp_noise = "skellam"', "secagg.dp.kind"),
                                      ("dp_delta = 1e-6", "secagg.dp.delta")])
def test_a_moved_key_fails_naming_its_new_place(tmp_path: Path, old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=rf"secagg\.dp_\w+ is now {new}"):
        _load(tmp_path, f"[secagg]\nenabled = true\n{old}\n")


@pytest.mark.parametrize("text, words", [
    ("[secagg]\nenabled = true\n[secagg.dp]\nnoise_multiplier = 1.0\n", r"secagg\.dp\.clip_norm"),
    ("[secagg]\nenabled = true\n[secagg.dp]\nnoise_multiplier = 0.0\nclip_norm = 1.0\n",
     r"\[secagg\.dp\]: noise_multiplier must be > 0"),
    ("[secagg.dp]\nnoise_multiplier = 1.0\nclip_norm = 1.0\n", r"secagg\.enabled = true"),
    ("[secagg]\nenabled = false\nmod = 'full'\n", r"unknown key\(s\) secagg\.mod"),
    ("[secagg]\nenabled = 1\n", r"secagg\.enabled must be bool"),
    ("[privacy.local]\nnoise_multiplier = -1.0\n", r"\[privacy\.local\]: noise_multiplier"),
    ("[privacy.local]\n", r"\[privacy\.local\]: set either noise_multiplier"),
    ("[privacy.local]\nmax_grad_norm = 'x'\n", r"privacy\.local\.max_grad_norm must be float"),
    ("[privacy.user]\nenabled = true\n", r"unknown key\(s\) privacy\.user\.enabled"),
    ("[rounds]\nfraction = 2.0\n", r"rounds\.fraction must be in \(0, 1\]"),
    ("[rounds]\nfraction = 0.0\n", (r"rounds\.fraction must be in \(0, 1\] \(or set "
                                   r"rounds\.clients_per_round\)")),
    ("[rounds]\nclients_per_round = -1\n", r"rounds\.clients_per_round must be >= 0"),
    ("[rounds]\neval_fraction = 1.5\n", r"rounds\.eval_fraction must be in \[0, 1\]"),
    ("[rounds]\nnum_rounds = 0\n", r"rounds\.num_rounds must be >= 1"),
    ("[rounds]\nover_selection = -0.5\n", r"rounds\.over_selection must be >= 0"),
])
def test_bad_settings_fail_at_start_naming_the_key(tmp_path: Path, text: str,
                                                    words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        _load(tmp_path, text)


def test_the_rounds_section_and_the_engine_share_one_set_of_defaults() -> None:
    rounds = {f.name: f.default for f in dataclasses.fields(RoundsConfig)}
    engine = {f.name: f.default for f in dataclasses.fields(EngineConfig)}

    for key in ("round_timeout_s", "eval_timeout_s", "client_timeout_s"):
        assert rounds[key] == engine[key]
    assert (engine["round_timeout_s"], engine["eval_timeout_s"], engine["client_timeout_s"]) == (
        120.0, 60.0, 120.0)


def test_an_empty_file_plans_the_default_run(tmp_path: Path) -> None:
    plan = _load(tmp_path, "")

    assert plan.run.engine.num_rounds == plan.config.rounds.num_rounds == 10
    assert plan.run.engine.max_payload_bytes == 4 << 30
    assert plan.run.engine.secagg is None


@pytest.mark.parametrize("section, domain", [(RoundsConfig, EngineConfig),
                                             (StrategyConfig, FedAvg),
                                             (LocalDPSection, LocalDPConfig)])
def test_a_section_has_the_defaults_of_the_domain_dataclass_it_mirrors(section: type,
                                                                       domain: type) -> None:
    ours = {f.name: f.default for f in dataclasses.fields(section)}
    theirs = {f.name: f.default for f in dataclasses.fields(domain)  # values, not tables/files
              if f.default not in (dataclasses.MISSING, None)}

    shared = set(ours) & set(theirs)

    assert len(shared) >= 4
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_dotted_overrides_reach_nested_tables() -> None:
    plan = load_config(None, {"secagg.enabled": True, "secagg.dp.noise_multiplier": 2.0,
                              "secagg.dp.clip_norm": 1.0})

    secagg = plan.run.engine.secagg

    assert secagg is not None and secagg.distributed_dp is not None
    assert secagg.distributed_dp.noise_multiplier == 2.0


def test_a_simulation_with_bad_settings_fails_before_loading_any_data(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from fedcore.sim import simulate as simulation
    from fedcore.sim.config import load_simulation_config

    def no_data(config: object) -> None:
        raise AssertionError("data loaded before the settings were checked")

    monkeypatch.setattr(simulation, "_data_source", no_data)
    config = load_simulation_config(None, {"privacy.user": {}})

    with pytest.raises(ConfigError, match=r"\[privacy\.user\]"):
        simulation.run(config, write=False)


def test_the_secagg_section_is_the_engine_s_secure_aggregation_config(tmp_path: Path) -> None:
    plan = _load(tmp_path, '[secagg]\nenabled = true\nmode = "secagg+"\nclip = 2.0\n')

    assert plan.config.secagg == SecureAggregationConfig(mode=Mode.SECAGG_PLUS, clip=2.0)
    assert plan.run.engine.secagg is plan.config.secagg


def test_secagg_switched_off_is_none(tmp_path: Path) -> None:
    plan = _load(tmp_path, '[secagg]\nenabled = false\nmode = "secagg+"\n')

    assert plan.config.secagg is None and plan.run.engine.secagg is None


def test_privacy_is_one_choice_made_by_the_table_present(tmp_path: Path) -> None:
    local = _load(tmp_path, "[privacy.local]\nnoise_multiplier = 1.1\n")
    user = _load(tmp_path, "[rounds]\nclients_per_round = 10\n[privacy.user]\n"
                           "noise_multiplier = 1.0\npopulation = 100\n")
    plain = _load(tmp_path, "[privacy]\n")

    assert local.config.privacy.mechanism == LocalDPSection(noise_multiplier=1.1)
    assert isinstance(local.run.strategy, FedAvg) and local.run.strategy.local_dp == LocalDPConfig(
        noise_multiplier=1.1)
    assert isinstance(user.config.privacy.mechanism, UserDPSection)
    assert plain.config.privacy == PrivacyConfig() and plain.config.privacy.mechanism is None
    with pytest.raises(ConfigError, match=r"\[privacy\] is one choice"):
        _load(tmp_path, "[privacy.local]\nnoise_multiplier = 1.0\n[privacy.user]\n"
                        "noise_multiplier = 1.0\n")


def test_a_local_dp_target_is_planned_over_the_run_s_rounds(tmp_path: Path) -> None:
    plan = _load(tmp_path, "[rounds]\nnum_rounds = 7\n[privacy.local]\ntarget_epsilon = 3.0\n")

    strategy = plan.run.strategy

    assert isinstance(strategy, FedAvg) and strategy.local_dp == LocalDPConfig(
        target_epsilon=3.0, planned_rounds=7)


@pytest.mark.parametrize("old, new", [
    ("[privacy]\nlocal_dp = true\n", r"privacy\.local_dp is now privacy\.local"),
    ("[privacy]\nnoise_multiplier = 1.0\n",
     r"privacy\.noise_multiplier is now privacy\.local\.noise_multiplier"),
    ("[privacy]\ntarget_epsilon = 1.0\n", r"is now privacy\.local\.target_epsilon"),
    ("[user_dp]\nenabled = true\n", r"user_dp is now privacy\.user"),
])
def test_an_old_privacy_key_fails_naming_its_new_place(tmp_path: Path, old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=new):
        _load(tmp_path, old)


def test_the_simulator_s_file_shares_the_run_sections() -> None:
    from fedcore.config import CoordinatorConfig, RunSections
    from fedcore.sim.config import SimulationConfig

    shared = {f.name for f in dataclasses.fields(RunSections)}

    assert shared == {"rounds", "strategy", "privacy", "secagg", "buffered"}
    assert issubclass(CoordinatorConfig, RunSections) and issubclass(SimulationConfig, RunSections)


def test_the_rounds_section_takes_its_selection_defaults_from_the_engine() -> None:
    from fedcore.engine.config import SelectionConfig

    rounds, selection = RoundsConfig(), SelectionConfig(fraction=1.0)

    assert (rounds.clients_per_round, rounds.over_selection, rounds.min_results,
            rounds.min_available) == (selection.count, selection.over_selection,
                                      selection.min_results, selection.min_available)


@pytest.mark.parametrize("table", ["[privacy.local]", "[privacy.user]"])
def test_the_example_file_s_privacy_tables_load_when_uncommented(tmp_path: Path,
                                                                  table: str) -> None:
    example = Path(__file__).resolve().parents[2] / "server" / "coordinator.example.toml"
    text = example.read_text()
    block = text[text.index(f"# {table}"):].split("\n\n")[0]
    lines = block.splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line.startswith("# [")), len(lines))
    uncommented = "\n".join(line.removeprefix("# ") for line in lines[:end])

    plan = _load(tmp_path, f"{text}\n{uncommented}\n".replace(
        "[rounds]\n", "[rounds]\nclients_per_round = 3\n", 1))

    assert plan.config.privacy.mechanism is not None
