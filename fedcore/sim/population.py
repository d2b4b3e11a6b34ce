"""A population of virtual clients that costs nothing until a client is used.

A virtual client is an index, a seed derived from (population seed, index) and a data
partition index; none of these is stored. Only clients that carry state between rounds
(a DP accountant, control variates) take memory, in `ClientStateStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedcore.protocol.params import Array
from fedcore.sim.backends.sequential import LocalData

DataSource = Callable[[int], LocalData]
Seeds = npt.NDArray[np.uint64]
_ID_PREFIX = "sim-"
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class VirtualClient:
    """What identifies a simulated client; built on demand, never stored."""

    index: int
    seed: int
    partition: int

    @property
    def client_id(self) -> str:
        """The id this client uses towards the round engine."""
        return f"{_ID_PREFIX}{self.index}"


class Population:
    """`size` virtual clients; client i holds data partition `i % num_partitions`.

    Args:
        size: how many clients are registered.
        seed: the population seed; each client's seed derives from it and the index.
        data: loads a partition's data on demand, e.g. `partial(synthetic_client, 1, 1, seed=0)`.
        num_partitions: how many distinct partitions `data` serves; default `size`.
    """

    def __init__(
        self, size: int, *, seed: int, data: DataSource, num_partitions: int | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"a population needs at least one client, got size={size}")
        partitions = size if num_partitions is None else num_partitions
        if partitions < 1:
            raise ValueError(f"num_partitions must be at least 1, got {partitions}")
        self._size, self._seed, self._data, self._partitions = size, seed, data, partitions
        self.state = ClientStateStore()
        self.control_variates = ClientStateStore()  # SCAFFOLD's c_i (fedcore.sim.scaffold)

    def __len__(self) -> int:
        return self._size

    def client(self, index: int) -> VirtualClient:
        """The virtual client at `index`; raises `IndexError` outside the population."""
        self._check(index)
        seed = int(mix_seeds(self._seed, np.array([index], dtype=np.uint64))[0])
        return VirtualClient(index=index, seed=seed, partition=index % self._partitions)

    def index_of(self, client_id: str) -> int:
        """The index behind a `VirtualClient.client_id`; raises `ValueError` for others."""
        digits = client_id.removeprefix(_ID_PREFIX)
        if digits == client_id or not digits.isdigit() or not 0 <= int(digits) < self._size:
            raise ValueError(f"{client_id!r} is not a client of this population")
        return int(digits)

    def load(self, index: int) -> LocalData:
        """The client's local data, produced by the data source now."""
        self._check(index)
        return self._data(index % self._partitions)

    def train_seeds(self, indices: npt.ArrayLike, round_number: int) -> Seeds:
        """Per-client seeds for one round's local training, vectorised over `indices`."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._size):
            raise IndexError(f"client indices must be in [0, {self._size})")
        client_seeds = mix_seeds(self._seed, idx.astype(np.uint64))
        return mix_seeds(round_number, client_seeds) >> np.uint64(1)  # 63 bits, fits torch

    def _check(self, index: int) -> None:
        if not 0 <= index < self._size:
            raise IndexError(f"client {index} is outside the population of {self._size}")


def partitioned_data(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    parts: Sequence[npt.NDArray[np.int64]],
) -> DataSource:
    """A data source serving partition i as `(x[parts[i]], y[parts[i]])`, e.g. from
    `fedcore.data.partition`; the slices are made when a client is loaded."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows for {len(y)} labels")

    def load(partition: int) -> LocalData:
        rows = parts[partition]
        return x[rows], y[rows]

    return load


def mix_seeds(seed: int, values: Seeds) -> Seeds:
    """SplitMix64 of `seed` combined with each value: cheap, vectorised, well mixed."""
    with np.errstate(over="ignore"):
        z = values * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True, slots=True)
class _Slot:
    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]
    offset: int
    nbytes: int


class ClientStateStore:
    """Per-client state as one immutable byte string per client, with one shared layout.

    The first `put` fixes the layout (names, shapes, dtypes); later states must match it.
    `get` returns read-only arrays that view the stored bytes.
    """

    def __init__(self) -> None:
        self._layout: dict[str, _Slot] | None = None
        self._states: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, index: object) -> bool:
        return index in self._states

    def __iter__(self) -> Iterator[int]:
        return iter(self._states)

    @property
    def nbytes(self) -> int:
        """Bytes of state held (payload only)."""
        return sum(len(b) for b in self._states.values())

    def put(self, index: int, state: Mapping[str, Array]) -> None:
        """Store a copy of `state` for client `index`, replacing any earlier one."""
        if self._layout is None:
            self._layout = _layout_of(state)
        elif _layout_of(state) != self._layout:
            raise ValueError(f"state of client {index} does not match the stored layout")
        self._states[index] = b"".join(np.ascontiguousarray(v).tobytes() for v in state.values())

    def get(self, index: int) -> dict[str, Array] | None:
        """The client's state (read-only arrays), or None when it has none."""
        raw = self._states.get(index)
        if raw is None or self._layout is None:
            return None
        return {
            name: np.frombuffer(
                raw, dtype=s.dtype, count=s.nbytes // s.dtype.itemsize, offset=s.offset
            ).reshape(s.shape)
            for name, s in self._layout.items()
        }

    def drop(self, index: int) -> None:
        """Forget the client's state, if any."""
        self._states.pop(index, None)


def _layout_of(state: Mapping[str, Array]) -> dict[str, _Slot]:
    layout: dict[str, _Slot] = {}
    offset = 0
    for name, value in state.items():
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ValueError(
                f"state {name!r} has dtype object; only plain numeric arrays are stored"
            )
        layout[name] = _Slot(array.shape, array.dtype, offset, array.nbytes)
        offset += array.nbytes
    return layout
