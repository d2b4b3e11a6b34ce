"""Where a coordinator's first model comes from, decided at start: the operator's file or
callable, or (opted in, with authenticated clients) a client; a spec file pins the layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcore.config import ConfigError, load_config
from fedcore.coordinator.model_files import load_model_spec, spec_to_json
from fedcore.coordinator.process import build_engine
from fedcore.engine import Phase
from fedcore.protocol.specs import spec_of

MODEL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def plan(tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    return load_config(None, {"server.out_dir": str(tmp_path / "run"), **overrides})


def test_without_a_model_or_the_opt_in_the_start_fails_saying_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_engine(plan(tmp_path), resume=False)

    assert "\n" not in str(err.value)
    assert "--initial-model" in str(err.value) and "--initial-model-from client" in str(err.value)


def test_the_opt_in_needs_authenticated_clients(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="authenticated clients"):
        build_engine(plan(tmp_path, **{"server.initial_model_from": "client"}), resume=False)


def test_opted_in_with_a_token_the_engine_asks_a_client(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    p = plan(tmp_path, **{"server.initial_model_from": "client",
                          "server.auth_token_file": str(tmp_path / "token")})

    engine = build_engine(p, resume=False)
    engine.join("c", now=0.0)
    engine.tick(0.0)

    assert engine.params is None and engine.phase is Phase.INITIALIZING


def test_a_callable_in_the_run_plan_is_the_operators_model(tmp_path: Path) -> None:
    p = plan(tmp_path)
    p = dataclasses.replace(p, run=dataclasses.replace(p.run, initial_model=lambda: MODEL))

    engine = build_engine(p, resume=False)

    assert engine.params is not None and spec_of(engine.params) == spec_of(MODEL)


def test_a_model_file_that_does_not_match_the_spec_file_fails_at_start(tmp_path: Path) -> None:
    np.savez(tmp_path / "model.npz", **MODEL)
    (tmp_path / "spec.json").write_text(json.dumps(
        {"tensors": [{"name": "w", "dtype": "float32", "shape": [5]}]}))

    with pytest.raises(ConfigError, match="do not match the model spec"):
        build_engine(plan(tmp_path, **{"server.initial_model": str(tmp_path / "model.npz"),
                                       "server.model_spec": str(tmp_path / "spec.json")}),
                     resume=False)


def test_a_spec_round_trips_through_json_and_an_npz_gives_the_same(tmp_path: Path) -> None:
    np.savez(tmp_path / "model.npz", **MODEL)
    (tmp_path / "spec.json").write_text(json.dumps(spec_to_json(spec_of(MODEL))))

    assert load_model_spec(tmp_path / "spec.json") == spec_of(MODEL)
    assert load_model_spec(tmp_path / "model.npz") == spec_of(MODEL)


@pytest.mark.parametrize("text, named", [
    ('{"tensors": []}', "at least one tensor"),
    ('{"tensors": [{"name": "w", "shape": [2]}]}', "tensor 0 has no 'dtype'"),
    ('{"tensors": [{"name": "w", "dtype": "float32", "shape": [2.5]}]}', "list of integers"),
    ('{"tensors": [{"name": "w", "dtype": "complex64", "shape": [2]}]}', "unsupported dtype"),
    ('{"tensors": [{"name": "w", "dtype": "float32", "shape": [2]}, '
     '{"name": "w", "dtype": "float32", "shape": [2]}]}', "duplicate"),
    ("not json", "cannot read"),
])
def test_a_bad_spec_file_is_refused_naming_what_is_wrong(
    tmp_path: Path, text: str, named: str
) -> None:
    (tmp_path / "spec.json").write_text(text)

    with pytest.raises(ConfigError, match=named):
        load_model_spec(tmp_path / "spec.json")
