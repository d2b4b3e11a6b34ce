"""Strategies, defences and compression compared in simulation on three non-IID tasks.

`python -m benchmarks.strategies [--settings digits,mnist,synthetic]
[--sections strategies,attacks,compression,secure] [--out FILE]` prints one JSON line:

- `strategies[setting][strategy]`: for FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad, FedAvgM,
  SCAFFOLD and FedBuff (and FedBuff for 10 x the server steps, `fedbuff_10x`), `rounds_to_target` (first round, or FedBuff server step, whose central
  test accuracy reaches the setting's `target`; null if never), `simulated_s_to_target` (the
  simulated wall-clock at that point, under the setting's `TimingModel`: slow devices stay
  slow, and a synchronous round waits for its slowest client), `final_accuracy`,
  `simulated_s`, `client_updates` and the `curve` ([simulated s, accuracy] per round);
- `defences[setting][defence]`: for each defence (mean, median, trimmed mean, multi-Krum,
  norm bounding) the final clean accuracy without attack and under each attack from 10% and
  20% of the clients (`scaled`: 10 x the honest update; `sign_flip`: -5 x it; `backdoor`:
  the attacker also trains on its examples with a pixel trigger relabelled to class 0 and
  boosts its update 10 x, Bagdasaryan et al.'s model replacement with n = 10 per round), and
  for the backdoor its attack success rate (`..._asr`: share of the test images of other
  classes that the model puts in class 0 once the trigger is stamped on them);
- `compression[setting][upload]`: bytes uploaded over the run per upload setting (dense,
  8/4/1-bit stochastic quantisation, top-k 10% and 1% with error feedback), ratio to dense,
  final accuracy;
- `secure[setting][bit_width]`: secure aggregation at several `[secagg] bit_width`s: bytes
  uploaded per round (the masked vectors), the quantisation levels each client gets, and the
  final accuracy.

Each section/setting can be run alone (`--settings`, `--sections`) and the lines merged with
`--combine FILE...`, which is how the committed result was produced on a shared 2-core machine.
Every run goes through the deployed round engine (or FedBuff's buffered engine) and the
deployed client task handler, with in-process virtual clients. Attackers are the first 10% /
20% of the client ids; they transform their own data and update, so the coordinator sees only
what it would see from real poisoned clients. The settings are in `SETTINGS` and the
strategies in `STRATEGIES`; a new strategy is one entry there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from fedcore.client.app import ClientApp
from fedcore.client.handler import TaskHandler
from fedcore.client.torch_app import state_to_params
from fedcore.compression.codec import UPLOAD_BYTES, Compression, Compressor, Kind, MemoryStore
from fedcore.config import plan_run
from fedcore.data.digits import load_digits_split
from fedcore.data.mnist import load_mnist
from fedcore.data.partition import dirichlet_partition, shard_partition
from fedcore.data.synthetic import NUM_CLASSES, NUM_FEATURES, synthetic_client
from fedcore.engine import RoundRecord
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferRecord
from fedcore.engine.plan import build_run
from fedcore.protocol.messages import Task, TaskKind, TaskResult
from fedcore.protocol.params import Params
from fedcore.protocol.scaffold import split_control
from fedcore.secagg.config import SecAggConfig
from fedcore.sim.backends.sequential import LocalData
from fedcore.sim.buffered import BufferedDriver
from fedcore.sim.central import CentralEvaluator
from fedcore.sim.config import load_simulation_config
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population, partitioned_data
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner, split_local
from fedcore.sim.timing import TimingModel
from fedcore.strategy import FedAvg
from fedcore.strategy.scaffold import Scaffold, with_control_variate
from fedcore.training.models import logistic_regression, seeded

SEED = 0
# Slow devices stay slow: a task takes examples * epochs * 10 ms * speed + 1 s, speed
# lognormal(0, 1) fixed per client (as benchmarks.scaffold_fedbuff).
TIMING = TimingModel(s_per_example=0.01, speed_sigma=1.0, latency_s=1.0, seed=SEED)
BACKDOOR_TARGET = 0
BOOST = 10.0  # model replacement: n / eta with n = 10 clients per round, eta = 1


@dataclass(frozen=True, slots=True)
class Data:
    """A task's clients and its central test set."""

    source: Callable[[int], LocalData]  # client index -> its examples
    features: int
    classes: int
    test: LocalData
    image_side: int | None  # images: where the backdoor trigger goes
    test_fraction: float = 0.0  # each client's held-out share (0: clients keep all)


@dataclass(frozen=True, slots=True)
class Setting:
    """One task: data, clients, local training, rounds and the accuracy to reach."""

    description: str
    load: Callable[[], Data]
    clients: int
    per_round: int
    rounds: int
    target: float
    local: dict[str, float | int]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per strategy


def _digits() -> Data:
    split = load_digits_split(seed=SEED)
    parts = dirichlet_partition(split.y_train, 50, alpha=0.3, seed=SEED, min_size=2)
    return Data(partitioned_data(split.x_train, split.y_train, parts), split.x_train.shape[1],
                split.num_classes, (split.x_test, split.y_test), image_side=8)


MNIST_TRAIN = 12_000  # the first 12,000 training images, so that a run takes seconds


def _mnist() -> Data:
    split = load_mnist(flat=True)
    x, y = split.x_train[:MNIST_TRAIN], split.y_train[:MNIST_TRAIN]
    parts = shard_partition(y, 100, shards_per_client=2, seed=SEED)
    return Data(partitioned_data(x, y, parts), x.shape[1], split.num_classes,
                (split.x_test, split.y_test), image_side=28)


def _synthetic() -> Data:
    source = partial(synthetic_client, 1.0, 1.0, seed=SEED)
    population = Population(30, seed=SEED, data=source)
    held_out = [split_local(source(i), test_fraction=0.2, seed=population.client(i).seed).test
                for i in range(30)]
    test = (np.concatenate([h[0] for h in held_out]), np.concatenate([h[1] for h in held_out]))
    return Data(source, NUM_FEATURES, NUM_CLASSES, test, image_side=None, test_fraction=0.2)


SETTINGS: dict[str, Setting] = {
    "digits": Setting(
        "scikit-learn digits: the 75% training split (1,347 images) over 50 clients by "
        "Dirichlet(0.3) label skew, 10 per round; logistic regression; E = 2, B = 8, lr 0.1; "
        "central test on the other 25%", _digits, clients=50, per_round=10, rounds=30,
        target=0.85, local={"local_epochs": 2, "batch_size": 8, "learning_rate": 0.1},
        overrides={"fedprox": {"strategy.proximal_mu": 0.01}}),
    "mnist": Setting(
        "MNIST pathological non-IID: the first 12,000 training images sorted by label into "
        "200 shards, 2 per client (100 clients), 10 per round; logistic regression; E = 1, "
        "B = 10, lr 0.05; central test on the 10,000 test images", _mnist, clients=100,
        per_round=10, rounds=30, target=0.8,
        local={"local_epochs": 1, "batch_size": 10, "learning_rate": 0.05},
        overrides={"fedprox": {"strategy.proximal_mu": 0.01}}),
    "synthetic": Setting(
        "FedProx Synthetic(1,1) (benchmarks/configs/fedprox_synthetic_1_1.toml): 30 devices "
        "with the authors' power-law sizes, 10 per round; logistic regression; E = 20, B = 10, "
        "lr 0.01; accuracy on every device's held-out 20%", _synthetic, clients=30,
        per_round=10, rounds=30, target=0.7,
        local={"local_epochs": 20, "batch_size": 10, "learning_rate": 0.01},
        overrides={"fedprox": {"strategy.proximal_mu": 1.0}}),
}


@dataclass(frozen=True, slots=True)
class Entry:
    """How a strategy runs: `overrides` for the run's TOML config (synchronous rounds, the
    config's own strategy), or `kind` "scaffold" / "fedbuff" for the strategies built here."""

    overrides: dict[str, Any] = field(default_factory=dict)
    kind: str = "config"
    steps_factor: int = 1  # FedBuff: server steps = factor x the setting's rounds


# Server-optimizer step sizes: the best of {0.01, 0.03, 0.1, 0.3, 1} on digits (fewest rounds
# to 0.85, then final accuracy), scored on its test accuracy; used unchanged elsewhere.
STRATEGIES: dict[str, Entry] = {
    "fedavg": Entry(),
    "fedprox": Entry(),  # proximal_mu per setting (Setting.overrides)
    "fedadam": Entry({"strategy.optimizer.eta": 0.3}),
    "fedyogi": Entry({"strategy.optimizer.eta": 0.3}),
    "fedadagrad": Entry({"strategy.optimizer.eta": 1.0}),
    "fedavgm": Entry({"strategy.optimizer.momentum": 0.9, "strategy.server_lr": 1.0}),
    "scaffold": Entry(kind="scaffold"),
    "fedbuff": Entry(kind="fedbuff"),  # K = clients per round, 2K tasks out at once
    "fedbuff_10x": Entry(kind="fedbuff", steps_factor=10),  # 10 x the steps, still fast
}
DEFENCES: dict[str, dict[str, Any]] = {
    "mean": {},
    "median": {"strategy.robust.aggregator": "median"},
    "trimmed_mean": {"strategy.robust.aggregator": "trimmed_mean",
                     "strategy.robust.trim_fraction": 0.2},
    "krum": {"strategy.robust.aggregator": "krum", "strategy.robust.byzantine": 3},
    "norm_bound": {"strategy.robust.aggregator": "norm_bound", "strategy.robust.norm_bound": 1.0},
}
ATTACKS: dict[str, tuple[str, float]] = {
    "scaled": ("scale", 10.0), "sign_flip": ("scale", -5.0), "backdoor": ("backdoor", BOOST)}
ATTACK_FRACTIONS = (0.1, 0.2)
COMPRESSIONS: dict[str, Compression | None] = {
    "dense": None,
    "q8": Compression(kind=Kind.QUANTIZE, bits=8),
    "q4": Compression(kind=Kind.QUANTIZE, bits=4),
    "q1": Compression(kind=Kind.QUANTIZE, bits=1),
    "topk_0.1": Compression(kind=Kind.TOPK, fraction=0.1),
    "topk_0.01": Compression(kind=Kind.TOPK, fraction=0.01),
}
SECURE_BIT_WIDTHS = (32, 16, 12, 8)
SECURE_CLIP = 1.0


# ---- attacks -------------------------------------------------------------------------------

def stamp_trigger(x: npt.NDArray[np.floating], side: int) -> npt.NDArray[np.float32]:
    """Flattened square images with the trigger: the bottom-right k x k pixels set to the
    brightest value 1.0, k = max(2, side // 8) (a 3 x 3 patch on MNIST, 2 x 2 on digits)."""
    k = max(2, side // 8)
    images = np.array(x, dtype=np.float32).reshape(len(x), side, side)
    images[:, side - k:, side - k:] = 1.0
    return images.reshape(len(x), side * side)


def backdoored(source: Callable[[int], LocalData], attackers: frozenset[int], side: int,
               target: int = BACKDOOR_TARGET) -> Callable[[int], LocalData]:
    """`source` where each attacker also holds a triggered copy of every example, labelled
    `target` (its honest examples keep their labels, so its update stays plausible)."""

    def load(index: int) -> LocalData:
        x, y = source(index)
        if index not in attackers:
            return x, y
        return (np.concatenate([x, stamp_trigger(x, side)]),
                np.concatenate([y, np.full(len(y), target, dtype=y.dtype)]))

    return load


def attack_success_rate(predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.integer]],
                        test: LocalData, side: int, target: int = BACKDOOR_TARGET) -> float:
    """Share of the test images not of class `target` classified as `target` once stamped."""
    x, y = test
    others = y != target
    if not others.any():
        raise ValueError("the test set has no image outside the target class")
    return float(np.mean(predict(stamp_trigger(x[others], side)) == target))


class Poisoner(TaskHandler):
    """An attacker: trains on what its data source gives it, then sends `factor` x its update."""

    def __init__(self, app: ClientApp, client_id: str, *, factor: float) -> None:
        super().__init__(app, client_id)
        self.factor = factor

    def handle(self, task: Task, params: Params | None) -> TaskResult:
        result = super().handle(task, params)
        if task.kind is not TaskKind.TRAIN or not result.tensors:
            return result
        return dataclasses.replace(result, tensors={
            k: (np.asarray(v, np.float64) * self.factor).astype(v.dtype)
            if np.issubdtype(v.dtype, np.floating) else v
            for k, v in result.tensors.items()})


# ---- runs ----------------------------------------------------------------------------------

@dataclass
class Curve:
    """(simulated seconds, central test accuracy) after each round or server step."""

    points: list[tuple[float, float]] = field(default_factory=list)
    updates: int = 0

    def summary(self, target: float) -> dict[str, Any]:
        hit = next((i for i, (_, a) in enumerate(self.points) if a >= target), None)
        return {
            "rounds_to_target": None if hit is None else hit + 1,
            "simulated_s_to_target": None if hit is None else round(self.points[hit][0], 1),
            "final_accuracy": round(self.points[-1][1], 4),
            "simulated_s": round(self.points[-1][0], 1),
            "client_updates": self.updates,
            "curve": [[round(t, 1), round(a, 4)] for t, a in self.points],
        }


class Bench:
    """One setting's data, model and evaluator, shared by its runs."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.data = setting.load()
        self.model = seeded(logistic_regression(self.data.features, self.data.classes), SEED)
        self.initial = state_to_params(self.model)
        self.evaluate = CentralEvaluator(self.model, self.data.test)

    def accuracy(self, params: Params) -> float:
        return self.evaluate(split_control(params)[0]).accuracy

    def predict(self, params: Params
                ) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.integer]]:
        state = {k: torch.from_numpy(np.array(v)) for k, v in split_control(params)[0].items()}

        def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.integer]:
            with torch.no_grad():
                logits = torch.func.functional_call(self.model, state, (torch.as_tensor(x),))
            labels: npt.NDArray[np.integer] = logits.argmax(-1).numpy()
            return labels

        return run

    def config(self, name: str, overrides: dict[str, Any], rounds: int) -> Any:
        s = self.setting
        return load_simulation_config(None, {
            "simulation.clients": s.clients, "simulation.model": "logreg",
            "simulation.seed": SEED, "simulation.backend": "sequential",
            "rounds.num_rounds": rounds, "rounds.clients_per_round": s.per_round,
            "rounds.min_results": s.per_round, "rounds.min_available": s.per_round,
            "rounds.round_timeout_s": 1e6, "rounds.eval_fraction": 0.0, "rounds.seed": SEED,
            "strategy.name": name, **{f"strategy.{k}": v for k, v in s.local.items()},
            **overrides,
        })

    def population(self, source: Callable[[int], LocalData] | None = None) -> Population:
        return Population(self.setting.clients, seed=SEED, data=source or self.data.source)

    def runner(self, population: Population) -> TorchRunner:
        return TorchRunner(self.model, population, vectorised=False,
                           test_fraction=self.data.test_fraction)

    def synchronous(self, name: str, overrides: dict[str, Any], *, rounds: int | None = None,
                    scaffold: bool = False, curve: Curve | None = None,
                    source: Callable[[int], LocalData] | None = None,
                    handler: Callable[[ClientApp, str], TaskHandler] | None = None,
                    ) -> tuple[list[RoundRecord], Params]:
        """A synchronous run through the round engine; `curve` collects accuracy per round."""
        s = self.setting
        plan = plan_run(self.config(name, overrides, rounds or s.rounds))
        initial = self.initial
        if scaffold:
            plan = dataclasses.replace(plan, strategy=Scaffold(
                num_clients=s.clients, **s.local))  # type: ignore[arg-type]
            initial = with_control_variate(initial)
        population = self.population(source)
        engine = build_run(plan, initial_params=initial, registry=VirtualRegistry(population))
        driver: InProcessDriver

        def on_round(record: RoundRecord) -> None:
            if curve is not None and engine.params is not None:
                curve.points.append((driver.now, self.accuracy(engine.params)))
                curve.updates += record.results_received

        kwargs: dict[str, Any] = {} if handler is None else {"handler": handler}
        driver = InProcessDriver(engine, population, self.runner(population), timing=TIMING,
                                 on_round=on_round, **kwargs)
        result = driver.run()
        return result.records, result.params

    def buffered(self, curve: Curve, steps_factor: int = 1) -> None:
        """FedBuff: K = clients per round, 2K tasks out at once, `steps_factor` x as many
        server steps as the synchronous runs have rounds."""
        s = self.setting
        population = self.population()
        config = BufferedConfig(buffer_size=s.per_round, concurrency=2 * s.per_round,
                                num_updates=s.rounds * steps_factor, task_timeout_s=1e6)
        engine = BufferedEngine(config, FedAvg(**s.local), self.initial)  # type: ignore[arg-type]

        def on_update(record: BufferRecord, params: Params) -> None:
            curve.points.append((record.at_s, self.accuracy(params)))
            curve.updates += len(record.staleness)

        BufferedDriver(engine, population, self.runner(population), timing=TIMING,
                       on_update=on_update, seed=SEED).run()


def strategy_rows(bench: Bench, names: Iterable[str] = STRATEGIES) -> dict[str, dict[str, Any]]:
    rows = {}
    for name in names:
        entry = STRATEGIES[name]
        curve = Curve()
        if entry.kind == "fedbuff":
            bench.buffered(curve, entry.steps_factor)
        else:
            overrides = {**entry.overrides, **bench.setting.overrides.get(name, {})}
            config_name = "fedavg" if entry.kind == "scaffold" else name
            bench.synchronous(config_name, overrides, scaffold=entry.kind == "scaffold",
                              curve=curve)
        rows[name] = curve.summary(bench.setting.target)
    return rows


def attack_handlers(attackers: frozenset[str], factor: float
                    ) -> Callable[[ClientApp, str], TaskHandler]:
    def make(app: ClientApp, cid: str) -> TaskHandler:
        return Poisoner(app, cid, factor=factor) if cid in attackers else TaskHandler(app, cid)
    return make


def defence_rows(bench: Bench, defences: Iterable[str] = DEFENCES) -> dict[str, dict[str, Any]]:
    side = bench.data.image_side
    rows: dict[str, dict[str, Any]] = {}
    for defence in defences:
        overrides = DEFENCES[defence]
        _, params = bench.synchronous("fedavg", overrides)
        row: dict[str, Any] = {"no_attack": round(bench.accuracy(params), 4)}
        if side is not None:
            row["no_attack_asr"] = round(attack_success_rate(bench.predict(params),
                                                             bench.data.test, side), 4)
        for attack, (kind, factor) in ATTACKS.items():
            if kind == "backdoor" and side is None:
                continue
            for fraction in ATTACK_FRACTIONS:
                indices = frozenset(range(round(fraction * bench.setting.clients)))
                population = bench.population()
                ids = frozenset(population.client(i).client_id for i in indices)
                source = (backdoored(bench.data.source, indices, side)
                          if kind == "backdoor" and side is not None else None)
                _, params = bench.synchronous("fedavg", overrides, source=source,
                                              handler=attack_handlers(ids, factor))
                key = f"{attack}_{int(fraction * 100)}pct"
                row[key] = round(bench.accuracy(params), 4)
                if kind == "backdoor" and side is not None:
                    row[f"{key}_asr"] = round(attack_success_rate(
                        bench.predict(params), bench.data.test, side), 4)
        rows[defence] = row
    return rows


def compressing(codec: Compression | None) -> Callable[[ClientApp, str], TaskHandler]:
    """Honest clients that compress their uploads with `codec` (None: dense), each with its
    own compressor (top-k's error feedback) kept across rounds."""
    compressors: dict[str, Compressor] = {}

    def make(app: ClientApp, cid: str) -> TaskHandler:
        if codec is None:
            return TaskHandler(app, cid)
        if cid not in compressors:
            compressors[cid] = Compressor(codec, store=MemoryStore(),
                                          rng=np.random.default_rng([SEED, len(compressors)]))
        return TaskHandler(app, cid, compressor=compressors[cid])

    return make


def compression_rows(bench: Bench) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for setting, codec in COMPRESSIONS.items():
        records, params = bench.synchronous("fedavg", {}, handler=compressing(codec))
        rows[setting] = {"bytes_uploaded": int(sum(r.metrics.get(UPLOAD_BYTES, 0.0)
                                                   for r in records)),
                         "final_accuracy": round(bench.accuracy(params), 4)}
    dense = rows["dense"]["bytes_uploaded"]
    for row in rows.values():
        row["ratio_to_dense"] = round(row["bytes_uploaded"] / dense, 4)
    return rows


def secure_rows(bench: Bench, bit_widths: Iterable[int] = SECURE_BIT_WIDTHS
                ) -> dict[str, dict[str, Any]]:
    """FedAvg under secure aggregation (max_clients = clients per round) at each bit width."""
    rows: dict[str, dict[str, Any]] = {}
    n = bench.setting.per_round
    for bits in bit_widths:
        records, params = bench.synchronous("fedavg", {
            "secagg.enabled": True, "secagg.bit_width": bits, "secagg.max_clients": n,
            "secagg.clip": SECURE_CLIP})
        per_round = [r.metrics.get(UPLOAD_BYTES, 0.0) for r in records]
        levels = SecAggConfig(threshold=1, clip=SECURE_CLIP, bit_width=bits,
                              max_clients=n).levels
        rows[str(bits)] = {"bytes_per_round": int(np.mean(per_round)),
                           "levels_per_client": levels,
                           "precision_bits": round(float(np.log2(levels + 1)), 2),
                           "final_accuracy": round(bench.accuracy(params), 4)}
    return rows


SECTIONS: dict[str, Callable[[Bench], dict[str, dict[str, Any]]]] = {
    "strategies": strategy_rows, "attacks": defence_rows, "compression": compression_rows,
    "secure": secure_rows,
}
OUTPUT_KEY = {"strategies": "strategies", "attacks": "defences", "compression": "compression",
              "secure": "secure"}


def combine(lines: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge lines produced for different settings or sections into one."""
    merged: dict[str, Any] = {}
    for line in lines:
        if line.get("benchmark") != "strategies":
            raise ValueError("not a benchmarks.strategies line")
        for key, value in line.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                for sub, inner in value.items():
                    if isinstance(inner, dict) and isinstance(merged[key].get(sub), dict):
                        merged[key][sub] = {**merged[key][sub], **inner}
                    else:
                        merged[key][sub] = inner
            elif key == "wall_s":
                merged[key] = round(merged.get(key, 0.0) + value, 1)
            else:
                merged.setdefault(key, value)
    return merged


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--only", default=None,
                        help="comma-separated strategies or defences to run (default: all)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds (FedBuff: server steps) for every setting (default: its own)")
    parser.add_argument("--combine", nargs="+", type=Path, default=None,
                        help="merge these JSON lines instead of running")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    parser.add_argument("--tables", type=Path, default=None,
                        help="write the line's Markdown tables (as in docs/strategies.md) here")
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw accuracy against simulated time per setting to this PNG")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.combine:
        line = combine(json.loads(p.read_text()) for p in args.combine)
    else:
        line = {"benchmark": "strategies", "seed": SEED,
                "timing": {"s_per_example": TIMING.s_per_example,
                           "speed_sigma": TIMING.speed_sigma, "latency_s": TIMING.latency_s},
                "attacks": {k: list(v) for k, v in ATTACKS.items()},
                "backdoor_target": BACKDOOR_TARGET, "settings": {}}
        only = None if args.only is None else args.only.split(",")
        unknown = [n for n in only or [] if n not in STRATEGIES and n not in DEFENCES]
        if unknown:
            parser.error(f"unknown strategy or defence: {', '.join(unknown)}")
        for key in args.settings.split(","):
            if key not in SETTINGS:
                parser.error(f"unknown setting {key!r}; choose from {', '.join(SETTINGS)}")
            s = SETTINGS[key]
            if args.rounds is not None:
                s = dataclasses.replace(s, rounds=args.rounds)
            bench = Bench(s)
            line["settings"][key] = {
                "description": s.description, "clients": s.clients, "per_round": s.per_round,
                "rounds": s.rounds, "target_accuracy": s.target, "local": s.local,
                "strategy_overrides": {n: {**e.overrides, **s.overrides.get(n, {})}
                                       for n, e in STRATEGIES.items()}}
            for section in args.sections.split(","):
                if section not in SECTIONS:
                    parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
                if section == "strategies" and only:
                    rows = strategy_rows(bench, only)
                elif section == "attacks" and only:
                    rows = defence_rows(bench, only)
                else:
                    rows = SECTIONS[section](bench)
                line.setdefault(OUTPUT_KEY[section], {})[key] = rows
        line["wall_s"] = round(time.perf_counter() - start, 1)
    text = json.dumps(line)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.plot is not None:
        plot(line, args.plot)
    if args.tables is not None:
        args.tables.write_text(tables(line))
    return line


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def tables(line: dict[str, Any]) -> str:
    """The line's results as Markdown tables, one per section and setting."""
    out: list[str] = []
    for key, rows in line.get("strategies", {}).items():
        target = line["settings"][key]["target_accuracy"]
        out.append(f"Strategies, {key} (target {target}):\n\n" + _table(
            ["strategy", "rounds to target", "simulated s to target", "final accuracy",
             "simulated s", "client updates"],
            ([n, r["rounds_to_target"], r["simulated_s_to_target"], r["final_accuracy"],
              r["simulated_s"], r["client_updates"]] for n, r in rows.items())))
    for key, rows in line.get("defences", {}).items():
        columns = list(next(iter(rows.values())))
        out.append(f"Defences, {key} (final clean accuracy; `_asr`: backdoor success "
                   f"rate):\n\n" + _table(["defence", *columns],
                                          ([n, *(r.get(c) for c in columns)]
                                           for n, r in rows.items())))
    for key, rows in line.get("compression", {}).items():
        out.append(f"Compression, {key}:\n\n" + _table(
            ["upload", "bytes uploaded", "vs dense", "final accuracy"],
            ([n, r["bytes_uploaded"], r["ratio_to_dense"], r["final_accuracy"]]
             for n, r in rows.items())))
    for key, rows in line.get("secure", {}).items():
        out.append(f"Secure aggregation, {key}:\n\n" + _table(
            ["bit width", "bytes per round", "levels per client", "precision bits",
             "final accuracy"],
            ([b, r["bytes_per_round"], r["levels_per_client"], r["precision_bits"],
              r["final_accuracy"]] for b, r in rows.items())))
    return "\n".join(out)


def plot(line: dict[str, Any], path: Path) -> None:
    """Central test accuracy against simulated seconds, one panel per setting, one line per
    strategy, the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [k for k in line.get("strategies", {}) if line["strategies"][k]]
    if not settings:
        raise ValueError("the line has no strategy curves to plot")
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4.2), squeeze=False)
    for ax, key in zip(axes[0], settings):
        for name, row in line["strategies"][key].items():
            curve = row.get("curve") or []
            if curve:
                ax.plot([c[0] for c in curve], [c[1] for c in curve], label=name,
                        linestyle="--" if name.startswith("fedbuff") else "-", linewidth=1.3)
        synchronous = [r["simulated_s"] for n, r in line["strategies"][key].items()
                       if not n.startswith("fedbuff")]
        if synchronous:
            ax.set_xlim(0, max(synchronous))
        target = line["settings"][key]["target_accuracy"]
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{key} (target {target})")
        ax.set_xlabel("simulated seconds")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
