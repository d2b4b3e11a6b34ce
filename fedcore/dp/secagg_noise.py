"""Distributed DP inside secure aggregation: how a client encodes its clipped, noised update.

A client in a round with distributed DP (`fedcore.client.secure.SecureSession`):
1. clips its update x (d-1 floats) to L2 norm C, and sends it UNWEIGHTED (weights would
   multiply the sensitivity); the last coordinate is the constant c (the weight slot);
2. quantises with stochastic rounding at scale s = L/(2c), L the levels chosen below;
3. adds integer noise n of variance σ²/t per coordinate (`DistributedNoise`, Skellam by
   default), σ = z·Δ₂, t the round's secure-aggregation threshold;
4. adds the public offset T and masks. The coordinator unmasks only the sum over survivors,
   removes k·T and the quantiser's offsets and divides by k, the number of survivors.

Guarantee. Neighbouring inputs: one participant's update replaced by a zero update (the same
as adding/removing its contribution, since who takes part is visible to a secure-aggregation
coordinator anyway; participation itself is NOT protected). The centred integer vectors then
differ by at most Δ₂ = s·C + √d in L2 norm: s·C from the clip, √d from stochastic rounding
(coupling both roundings on one uniform, each coordinate moves by less than 1; round-to-nearest
would give √d/2, `integer_l2_sensitivity`). Any round that completes has k >= t survivors,
whose summed noise has variance k·σ²/t >= σ² per coordinate; the worst case, exactly t, is
what the coordinator prices: each round's `NoisyEncoding.step()` (z, Δ₂, d) goes into the run's
`fedcore.dp.distributed_accountant.DistributedAccountant`, kept in the checkpoint, and
`distributed_epsilon` is that accountant's ε over the rounds so far, each round at the setting
it ran with (Agarwal et al. 2021 RDP bound; exact for SKELLAM, which is closed under sums). For
DISCRETE_GAUSSIAN only a Gaussian approximation exists here: `distributed_epsilon_approx`.
It assumes:
- clients follow the protocol: they clip, add their noise share and use a secret rng (clients
  trust the coordinator's z, C and t in the setup; a client may refuse low values);
- at most k - t of the k survivors collude with the coordinator (colluders know their own
  noise and can subtract it);
- the coordinator does not learn individual masked inputs' contents (secure aggregation).

No wrap. Each client's noise is truncated to [-T, T], T = ceil(20·σ) (20 std of the largest
possible share, t = 1), by redrawing coordinates outside; the levels L satisfy L + 2T <= the
protocol's per-client range, so every client's word lies in [0, levels] as `SecAggClient`
requires and the sum of max_clients words stays below 2**b. The truncation moves each noise
vector by total variation at most d·2exp(-T²/(2(σ² + T/3))) (Bernstein for Skellam; discrete
Gaussians are σ²-subgaussian); `NoisyEncoding.for_round` refuses settings where this exceeds
1e-6·δ per round and max_clients clients, so it is absorbed in δ. Sizing for t = 1 also keeps
L, Δ₂ and therefore the per-round ε independent of the round's cohort size. L is also capped so
that σ <= 2**20 (Skellam's Poisson λ <= 2**39): numpy's Poisson sampler has visibly too much
variance from λ ~ 1e15 (measured: +4% at 1e15, +41% at 1e16), and more levels would only
quantise far below the noise anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedcore.dp.distributed import DistributedNoise
from fedcore.dp.distributed_accountant import DistributedStep
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.packing import word_dtype
from fedcore.secagg.quantize import Quantizer, append_weight

TAIL_STDS = 20.0
MIN_LEVELS = 256
MAX_NOISE_STD = 2.0**20  # σ at t = 1, caps the levels: numpy's Poisson drifts above λ ~ 1e13
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class NoisyEncoding:
    """One round's encoding: quantiser levels, noise offset T and the noise itself."""

    config: DistributedDPConfig
    quantizer: Quantizer
    offset: int
    noise: DistributedNoise
    dim: int

    @classmethod
    def for_round(cls, config: DistributedDPConfig, secagg: SecAggConfig, dim: int) -> NoisyEncoding:
        """The encoding both sides derive from the round's settings; `dim` counts the weight slot.

        Raises:
            ValueError: the noise's tails leave fewer than MIN_LEVELS levels in the bit width,
                or its truncation would not be negligible; the message names what to change.
        """
        z, c, big_c = config.noise_multiplier, secagg.clip, config.clip_norm
        room = secagg.levels  # each client's word must lie in [0, room]
        root_d = math.sqrt(dim)

        def tail(levels: int) -> int:
            return math.ceil(TAIL_STDS * z * (levels * big_c / (2 * c) + root_d))

        levels = math.floor((room - 2 - 2 * TAIL_STDS * z * root_d) / (1 + TAIL_STDS * z * big_c / c))
        levels = min(levels, math.floor(2 * c / big_c * (MAX_NOISE_STD / z - root_d)))
        while levels >= MIN_LEVELS and levels + 2 * tail(levels) > room:
            levels -= 1
        if levels < MIN_LEVELS:
            raise ValueError(
                f"distributed DP noise (noise_multiplier={z}, clip_norm={big_c}, +-{TAIL_STDS:g} "
                f"std tails) leaves {max(levels, 0)} < {MIN_LEVELS} quantisation levels in "
                f"bit_width={secagg.bit_width} for max_clients={secagg.max_clients}; raise "
                f"bit_width or lower max_clients"
            )
        sensitivity = levels * big_c / (2 * c) + root_d
        noise = DistributedNoise(noise_multiplier=z, l2_sensitivity=sensitivity,
                                 min_survivors=secagg.threshold, kind=config.kind)
        offset = tail(levels)
        sigma2 = noise.total_variance
        p_out = dim * 2 * math.exp(-offset**2 / (2 * (sigma2 + offset / 3)))
        if p_out * secagg.max_clients > 1e-6 * config.delta:
            raise ValueError(f"noise truncation probability {p_out:.3g} per client is not "
                             f"negligible against delta={config.delta}; raise noise_multiplier")
        quantizer = Quantizer(clip=c, levels=levels, bit_width=secagg.bit_width)
        return cls(config=config, quantizer=quantizer, offset=offset, noise=noise, dim=dim)

    @property
    def scale(self) -> float:
        """s: integer units per float unit."""
        return self.quantizer.levels / (2 * self.quantizer.clip)

    def encode(self, update: npt.ArrayLike, rng: np.random.Generator) -> npt.NDArray[np.unsignedinteger]:
        """A client's words: clip(update) quantised, plus its noise share and the offset T."""
        flat = np.asarray(update, dtype=np.float64).ravel()
        if flat.size != self.dim - 1:
            raise ValueError(f"the update has {flat.size} values, the round expects {self.dim - 1}")
        if not np.isfinite(flat).all():
            raise ValueError("cannot encode non-finite values")
        norm = float(np.linalg.norm(flat))
        if norm > self.config.clip_norm:
            flat = flat * (self.config.clip_norm / norm * (1 - 1e-9))
        vector = append_weight(flat, 1.0, clip=self.quantizer.clip)
        words = self.quantizer.quantize(vector, rng).astype(np.int64)
        words += self.sample_noise(rng) + self.offset
        return words.astype(word_dtype(self.quantizer.bit_width))

    def sample_noise(self, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """One client's noise share, truncated to [-T, T] by redrawing what lies outside."""
        noise = self.noise.sample(self.dim, rng)
        outside = np.flatnonzero(np.abs(noise) > self.offset)
        while outside.size:
            noise[outside] = self.noise.sample(outside.size, rng)
            outside = outside[np.abs(noise[outside]) > self.offset]
        return noise

    def decode_mean(self, total: npt.NDArray[np.unsignedinteger], survivors: int) -> Floats:
        """The noisy mean update (d-1 floats) from the exact sum of `survivors` clients' words."""
        if survivors < 1:
            raise ValueError("no survivors: nothing to decode")
        centred = total.astype(np.float64) - survivors * self.offset
        summed = self.quantizer.dequantize_sum(centred, survivors)  # type: ignore[arg-type]
        return summed[:-1] / survivors

    def step(self) -> DistributedStep:
        """This round's setting, for the run's `DistributedAccountant` (which prices it)."""
        return DistributedStep(kind=self.config.kind, noise_multiplier=self.noise.noise_multiplier,
                               l2_sensitivity=self.noise.l2_sensitivity, dim=self.dim)

    def measurements(self, *, survivors: int) -> dict[str, float]:
        """What a round reports besides ε: clip norm and the noise std of the sum in update
        units (ε is the run's, from its `DistributedAccountant`)."""
        sigma = self.noise.noise_multiplier * self.noise.l2_sensitivity / self.scale
        actual = math.sqrt(self.noise.sum_variance(survivors)) / self.scale
        return {"clip_norm": self.config.clip_norm, "noise_std": sigma,
                "noise_std_sum": actual, "noise_std_mean": actual / survivors,
                "min_survivors": float(self.noise.min_survivors)}
