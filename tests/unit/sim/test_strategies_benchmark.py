"""benchmarks.strategies: its attackers, the backdoor's trigger and success rate, secure
aggregation's bytes per bit width, and the merging of partial lines."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks import strategies as bench_mod
from benchmarks.strategies import (
    Bench,
    attack_handlers,
    attack_success_rate,
    backdoored,
    combine,
    secure_rows,
    stamp_trigger,
)
from fedcore.secagg.config import SecAggConfig, choose_bit_width

TINY = dataclasses.replace(bench_mod.SETTINGS["digits"], per_round=5, rounds=1)


def test_the_trigger_lights_the_bottom_right_patch_only_and_leaves_its_input_alone() -> None:
    x = np.zeros((3, 64), dtype=np.float32)
    stamped = stamp_trigger(x, 8).reshape(3, 8, 8)
    assert (stamped[:, 6:, 6:] == 1.0).all()
    assert stamped.sum() == 3 * 4  # a 2 x 2 patch on 8 x 8 images, nothing else
    assert (x == 0).all()
    assert (stamp_trigger(np.zeros((1, 784), np.float32), 28).reshape(28, 28)[25:, 25:] == 1).all()


def test_attackers_hold_triggered_copies_labelled_with_the_target_and_others_are_unchanged(
) -> None:
    x = np.random.default_rng(0).random((4, 64)).astype(np.float32)
    y = np.array([1, 2, 3, 4], dtype=np.int64)
    load = backdoored(lambda i: (x, y), frozenset({1}), side=8, target=0)
    honest_x, honest_y = load(0)
    assert honest_x is x and honest_y is y
    bad_x, bad_y = load(1)
    assert bad_x.shape == (8, 64)
    np.testing.assert_array_equal(bad_x[:4], x)
    np.testing.assert_array_equal(bad_x[4:], stamp_trigger(x, 8))
    assert bad_y.tolist() == [1, 2, 3, 4, 0, 0, 0, 0]


def test_attack_success_rate_counts_stamped_images_of_other_classes_put_in_the_target() -> None:
    x = np.zeros((6, 64), dtype=np.float32)
    y = np.array([0, 0, 1, 2, 3, 4], dtype=np.int64)

    def fooled(images: npt.NDArray[np.float32]) -> npt.NDArray[np.integer]:
        # a model that obeys the trigger on half of what it sees
        hit = images.reshape(-1, 8, 8)[:, 7, 7] == 1.0
        out = np.where(hit, 0, 9).astype(np.int64)
        out[::2] = 9
        return out

    assert attack_success_rate(fooled, (x, y), side=8, target=0) == 0.5  # 2 of the 4 others
    with pytest.raises(ValueError, match="no image outside"):
        attack_success_rate(fooled, (x[:2], y[:2]), side=8, target=0)


def test_sign_flipping_attackers_negate_the_round_update_through_the_deployed_handler() -> None:
    bench = Bench(TINY)
    everyone = frozenset(bench.population().client(i).client_id for i in range(TINY.clients))
    _, honest = bench.synchronous("fedavg", {})
    _, flipped = bench.synchronous("fedavg", {}, handler=attack_handlers(everyone, -1.0))
    for name, initial in bench.initial.items():
        start = np.asarray(initial, np.float64)
        step = np.asarray(honest[name], np.float64) - start
        assert np.abs(step).max() > 1e-3
        np.testing.assert_allclose(np.asarray(flipped[name], np.float64) - start, -step,
                                   rtol=1e-5, atol=1e-6)


def test_secure_bit_width_sets_the_masked_bytes_and_each_clients_levels() -> None:
    bench = Bench(TINY)
    rows = secure_rows(bench, bit_widths=(32, 16, 12))
    n = TINY.per_round
    # every client sends its masked coordinates (the model's plus the weight's) packed at b bits
    coordinates = sum(v.size for v in bench.initial.values()) + 1
    for bits in (32, 16, 12):
        assert rows[str(bits)]["bytes_per_round"] == n * math.ceil(coordinates * bits / 8)
    for bits in (32, 16, 12):
        assert rows[str(bits)]["levels_per_client"] == SecAggConfig(
            threshold=1, clip=1.0, bit_width=bits, max_clients=n).levels
    # 8-bit client precision needs choose_bit_width(n, 8) bits: 255 levels or more each
    assert choose_bit_width(n, 8) == 11
    assert SecAggConfig(threshold=1, clip=1.0, bit_width=11, max_clients=n).levels >= 255
    # coarser integers, same model up to quantisation
    assert abs(rows["12"]["final_accuracy"] - rows["32"]["final_accuracy"]) < 0.05


def test_partial_lines_merge_into_one(tmp_path: Path) -> None:
    a = {"benchmark": "strategies", "settings": {"digits": {"rounds": 3}},
         "strategies": {"digits": {"fedavg": {"final_accuracy": 0.5}}}, "wall_s": 1.0}
    b = {"benchmark": "strategies", "settings": {"mnist": {"rounds": 4}},
         "strategies": {"digits": {"scaffold": {"final_accuracy": 0.6}}},
         "defences": {"mnist": {"mean": {"no_attack": 0.7}}}, "wall_s": 2.5}
    merged = combine([a, b])
    assert merged["settings"] == {"digits": {"rounds": 3}, "mnist": {"rounds": 4}}
    assert set(merged["strategies"]["digits"]) == {"fedavg", "scaffold"}
    assert merged["defences"]["mnist"]["mean"]["no_attack"] == 0.7
    assert merged["wall_s"] == 3.5
    with pytest.raises(ValueError, match="not a benchmarks.strategies line"):
        combine([{"benchmark": "other"}])
    paths = []
    for i, line in enumerate((a, b)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(line))
    out = tmp_path / "all.json"
    assert bench_mod.main(["--combine", *map(str, paths), "--out", str(out)]) == merged
    assert json.loads(out.read_text()) == merged


def test_tables_and_plot_come_from_the_line(tmp_path: Path) -> None:
    row = {"rounds_to_target": 2, "simulated_s_to_target": 12.5, "final_accuracy": 0.9,
           "simulated_s": 20.0, "client_updates": 30, "curve": [[5.0, 0.5], [12.5, 0.9]]}
    line = {"benchmark": "strategies",
            "settings": {"digits": {"target_accuracy": 0.85}},
            "strategies": {"digits": {"fedavg": row, "fedbuff": {**row, "rounds_to_target": None,
                                                                 "simulated_s_to_target": None}}},
            "defences": {"digits": {"mean": {"no_attack": 0.9, "backdoor_10pct_asr": 0.75}}}}
    text = bench_mod.tables(line)
    assert "| fedavg | 2 | 12.5 | 0.900 | 20.0 | 30 |" in text
    assert "| fedbuff | — | — | 0.900 |" in text
    assert "| mean | 0.900 | 0.750 |" in text
    bench_mod.plot(line, png := tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no strategy curves"):
        bench_mod.plot({"strategies": {}}, png)
