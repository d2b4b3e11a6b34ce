"""FedProx under systems heterogeneity (Li et al. 2020, section 5.2, Figure 1, Synthetic(1, 1)).

30 devices of Synthetic(1, 1) (the authors' generator, `fedcore.data.synthetic`), 10 selected
uniformly per round, E = 20 local epochs, batch 10, SGD lr 0.01, multinomial logistic
regression, 90% stragglers (each does 1..19 of the 20 epochs by the deadline). Compared:

- FedAvg, which drops the stragglers (they miss the deadline);
- FedProx mu = 0, which aggregates their partial work;
- FedProx mu = 1, partial work and the proximal term.

All three go through the real round engine (`InProcessDriver` + `StragglerModel`); the training
loss is the global model's loss over every device's training split after each round, as the
paper plots. `python -m benchmarks.reproduce_fedprox` writes
`benchmarks/results/fedprox_synthetic.png` and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from fedcore.client.torch_app import state_to_params
from fedcore.data.synthetic import NUM_CLASSES, NUM_FEATURES, synthetic_client
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.sequential import LocalData, cross_entropy_per_example
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner, split_local
from fedcore.sim.stragglers import StragglerModel
from fedcore.strategy import FedAvg
from fedcore.training.models import logistic_regression, seeded

RESULTS = Path(__file__).resolve().parent / "results"
DEVICES, PER_ROUND, EPOCHS, BATCH, LR = 30, 10, 20, 10, 0.01
TEST_FRACTION = 0.2  # the authors' generator keeps 80% of each device's data for training


@dataclass(frozen=True, slots=True)
class Arm:
    """One curve of the figure."""

    label: str
    mu: float
    accept_partial_work: bool


ARMS = (
    Arm("FedAvg (drops stragglers)", 0.0, False),
    Arm("FedProx mu=0 (partial work)", 0.0, True),
    Arm("FedProx mu=1 (partial work)", 1.0, True),
)


def training_loss(model: torch.nn.Module, params: Params, data: LocalData) -> float:
    """Mean cross-entropy of `params` over `data` (every device's training split)."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
    with torch.no_grad():
        logits = torch.func.functional_call(model, state, (torch.as_tensor(data[0]),))
        return float(cross_entropy_per_example(logits, torch.as_tensor(data[1])).mean())


def run_arm(arm: Arm, *, rounds: int, stragglers: float, seed: int, vectorised: bool) -> list[float]:
    """Training loss after each round (index 0: the initial model)."""
    population = Population(DEVICES, seed=seed, data=partial(synthetic_client, 1.0, 1.0, seed=seed))
    splits = [
        split_local(population.load(i), test_fraction=TEST_FRACTION, seed=population.client(i).seed)
        for i in range(DEVICES)
    ]
    train = (np.concatenate([s.train[0] for s in splits]), np.concatenate([s.train[1] for s in splits]))
    model = seeded(logistic_regression(NUM_FEATURES, NUM_CLASSES), seed)
    engine = RoundEngine(
        EngineConfig(num_rounds=rounds, train=SelectionConfig(count=PER_ROUND), evaluate=None,
                     round_timeout_s=3600.0, seed=seed),
        FedAvg(local_epochs=EPOCHS, batch_size=BATCH, learning_rate=LR, proximal_mu=arm.mu),
        initial_params=state_to_params(model),
        registry=VirtualRegistry(population),
    )
    losses = [training_loss(model, state_to_params(model), train)]

    def on_round(_: object) -> None:
        assert engine.params is not None  # the model after the round just closed
        losses.append(training_loss(model, engine.params, train))

    runner = TorchRunner(model, population, vectorised=vectorised, test_fraction=TEST_FRACTION)
    straggling = StragglerModel(
        fraction=stragglers, accept_partial_work=arm.accept_partial_work, seed=seed
    )
    InProcessDriver(engine, population, runner, stragglers=straggling, on_round=on_round).run()
    return losses


def plot(curves: dict[str, list[float]], path: Path, stragglers: float) -> None:
    """Training loss per round, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, losses in curves.items():
        ax.plot(range(len(losses)), losses, label=label)
    ax.set(xlabel="round", ylabel="training loss",
           title=f"Synthetic(1,1), {stragglers:.0%} stragglers (fedcore)")
    ax.set_ylim(0, min(6.0, max(max(v) for v in curves.values()) * 1.05))
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Run the three arms, write the plot, print (and return) one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="the paper plots 200")
    parser.add_argument("--stragglers", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectorised", action="store_true",
                        help="vectorised backend (slower here: 10 clients of very unequal sizes)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fedprox_synthetic.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    begin = time.perf_counter()
    curves = {
        arm.label: run_arm(arm, rounds=args.rounds, stragglers=args.stragglers, seed=args.seed,
                           vectorised=args.vectorised)
        for arm in ARMS
    }
    plot(curves, args.out, args.stragglers)
    report: dict[str, object] = {
        "benchmark": "reproduce_fedprox",
        "rounds": args.rounds,
        "stragglers": args.stragglers,
        "seed": args.seed,
        "final_training_loss": {k: round(v[-1], 4) for k, v in curves.items()},
        "min_training_loss": {k: round(min(v), 4) for k, v in curves.items()},
        "mean_loss_last_20_rounds": {k: round(float(np.mean(v[-20:])), 4) for k, v in curves.items()},
        "plot": str(args.out),
        "wall_s": round(time.perf_counter() - begin, 1),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
