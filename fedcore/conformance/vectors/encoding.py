"""Vector groups for encodings: tensors and chunks, quantisation, weighting, distributed-DP noise.

Floats are JSON numbers written by Python's `repr` (the shortest decimal that reads back to the
same IEEE 754 double); `*_bits` fields repeat them as the 64-bit pattern in hex where the exact
value matters.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.protocol.params import Array
from fedcore.protocol.specs import spec_of
from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.quantize import Quantizer, append_weight
from fedcore.wire.convert import spec_to_proto
from fedcore.wire.tensor import encode, iter_chunks

Group = dict[str, Any]


def float_bits(value: float) -> str:
    """The IEEE 754 binary64 pattern of `value`, big-endian hex."""
    return struct.pack(">d", value).hex()


def tensor_group() -> Group:
    """A model's payload bytes and its chunks."""
    params: dict[str, Array] = {
        "w": np.array([[1.5, -2.0, 0.1], [3.25, -0.0, 65504.0]], dtype=np.float32),
        "h": np.array([1.0, -2.5, 0.333], dtype=np.float16),
        "d": np.array(np.pi, dtype=np.float64),
        "i8": np.array([-128, 127, -1], dtype=np.int8),
        "u16": np.array([[1, 65535]], dtype=np.uint16),
        "i32": np.array([-2, 2**31 - 1], dtype=np.int32),
        "i64": np.array([-(2**62), 5], dtype=np.int64),
        "u8": np.array([0, 200, 255], dtype=np.uint8),
        "u32": np.array([4000000000], dtype=np.uint32),
        "u64": np.array([2**64 - 1], dtype=np.uint64),
        "b": np.array([True, False, True], dtype=np.bool_),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    spec = spec_of(params)
    tensors = [{"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape),
                "values": np.asarray(params[t.name]).ravel().tolist(),
                "bytes": np.ascontiguousarray(params[t.name]).astype(
                    params[t.name].dtype.newbyteorder("<")).tobytes().hex()}
               for t in spec.tensors]
    return {
        "description": "Each tensor's elements in C order, little-endian, concatenated in spec "
        "order without padding. Chunks: (offset, data) slices of that payload, in order, here "
        "at most 16 bytes each (fedcore sends 1 MiB). model_spec_proto is fedcore.v1.ModelSpec.",
        "tensors": tensors,
        "payload": encode(params).hex(),
        "chunk_bytes": 16,
        "chunks": [{"offset": off, "data": data.hex()} for off, data in iter_chunks(params, 16)],
        "model_spec_proto": spec_to_proto(spec).SerializeToString().hex(),
    }


def quantize_case(quantizer: Quantizer, vector: np.ndarray, seed: int) -> dict[str, Any]:
    """One quantisation: the uniforms a numpy PCG64 Generator of `seed` gives, and the words."""
    uniforms = np.random.default_rng(seed).random(vector.size)
    words = quantizer.quantize(vector, np.random.default_rng(seed))
    scale = quantizer.levels / (2 * quantizer.clip)
    return {
        "vector": vector.tolist(), "vector_bits": [float_bits(v) for v in vector.tolist()],
        "scale": scale, "uniforms": uniforms.tolist(),
        "uniforms_bits": [float_bits(u) for u in uniforms.tolist()],
        "words": [int(w) for w in words],
    }


def quantization_group() -> Group:
    """Clipping, stochastic rounding and the weight coordinate."""
    cases = []
    for i, (clip, bits, max_clients) in enumerate([(1.0, 32, 100), (0.5, 16, 4), (2.0, 48, 1000)]):
        config = SecAggConfig(threshold=1, max_clients=max_clients, clip=clip, bit_width=bits)
        quantizer = Quantizer.from_config(config)
        update = np.array([0.0, 0.3, -0.7, clip, -clip, 3 * clip, -5 * clip, 1e-9, 0.123456789])
        num_examples, weight_cap = [(37, 100.0), (500, 100.0), (1, 3.0)][i]
        weight = min(num_examples / weight_cap, 1.0)
        vector = append_weight(update * weight, weight, clip=clip)
        case = {"clip": clip, "bit_width": bits, "max_clients": max_clients,
                "levels": config.levels, "update": update.tolist(), "num_examples": num_examples,
                "weight_cap": weight_cap, "weight": weight}
        case.update(quantize_case(quantizer, vector, seed=1000 + i))
        cases.append(case)
    return {"description": "levels L = min(floor((2^b - 1) / max_clients), 2^52). weight w = "
            "min(num_examples / weight_cap, 1); vector = [w * x_1, ..., w * x_d, w * clip]. "
            "scale = L / (2 * clip); for each coordinate v: s = (min(max(v, -clip), clip) + clip) "
            "* scale; q = floor(s) + (1 if u < s - floor(s) else 0) with u uniform in [0, 1); "
            "word = min(q, L). All in IEEE 754 binary64 in exactly this order. The uniforms are "
            "the client's private randomness: here numpy PCG64 Generator(seed).random(), listed "
            "so other languages need not reproduce numpy; any uniform source is conformant.",
            "cases": cases}


def distributed_dp_group() -> Group:
    """The distributed-DP encoding: levels, offset and the noisy words."""
    cases = []
    settings = [
        (DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0), 1.0, 32, 100, 3, 7),
        (DistributedDPConfig(noise_multiplier=0.7, clip_norm=0.5,
                             kind=IntegerNoise.DISCRETE_GAUSSIAN, delta=1e-6), 0.25, 40, 20, 2, 5),
    ]
    for i, (dp, clip, bits, max_clients, threshold, dim) in enumerate(settings):
        secagg = SecAggConfig(threshold=threshold, max_clients=max_clients, clip=clip,
                              bit_width=bits)
        encoding = NoisyEncoding.for_round(dp, secagg, dim)
        update = np.linspace(-0.9, 1.3, dim - 1)
        norm = float(np.linalg.norm(update))
        clipped = update * (dp.clip_norm / norm * (1 - 1e-9)) if norm > dp.clip_norm else update
        vector = append_weight(clipped, 1.0, clip=clip)
        seed = 2000 + i
        rng = np.random.default_rng(seed)
        uniforms = rng.random(dim)
        noise = encoding.sample_noise(rng)
        words = encoding.encode(update, np.random.default_rng(seed))
        quantized = encoding.quantizer.quantize(vector, np.random.default_rng(seed))
        assert [int(w) for w in words] == [int(q) + int(n) + encoding.offset
                                           for q, n in zip(quantized, noise, strict=True)]
        cases.append({
            "noise_multiplier": dp.noise_multiplier, "clip_norm": dp.clip_norm,
            "kind": dp.kind.value, "delta": dp.delta, "clip": clip, "bit_width": bits,
            "max_clients": max_clients, "threshold": threshold, "dim": dim,
            "room": secagg.levels, "levels": encoding.quantizer.levels,
            "offset": encoding.offset, "l2_sensitivity": encoding.noise.l2_sensitivity,
            "client_variance": encoding.noise.client_variance,
            "update": update.tolist(), "clipped": clipped.tolist(), "vector": vector.tolist(),
            "numpy_seed": seed, "uniforms": uniforms.tolist(),
            "quantized": [int(q) for q in quantized], "noise": [int(n) for n in noise],
            "words": [int(w) for w in words],
        })
    return {"description": "See docs/protocol.md 8.10. levels, offset (T), l2_sensitivity and "
            "client_variance are deterministic functions of the setup and MUST match exactly. "
            "words = quantized + noise + offset. uniforms and noise come from one numpy PCG64 "
            "Generator(numpy_seed): first dim uniforms for rounding, then the noise draws; they "
            "are reference values for Python only: an implementation in another language MUST "
            "reproduce the distributions, not these draws.", "cases": cases}
