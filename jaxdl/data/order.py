"""The order in which training examples are seen: one permutation per epoch, fixed by the seed.

Both pipelines (in-memory arrays and streamed Grain records) read examples in this order, so they
give the same batches for the same seed. The permutation is an argsort of raw Philox output:
NumPy guarantees the bit streams of its bit generators across versions, which it does not for
`Generator.permutation`, and it is computed for a whole epoch at once (about 0.1 ms for 10,000
examples) instead of one index at a time.
"""

import functools
import sys
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """A permutation of range(size), different for every (seed, epoch). Read-only."""
    key = np.array([seed % 2**64, epoch % 2**64], dtype=np.uint64)
    bits = np.random.Philox(key=key).random_raw(size)
    order = np.argsort(bits, kind="stable")
    order.flags.writeable = False  # Cached and shared: nobody may change it.
    return order


def stream_positions(start: int, count: int, size: int, seed: int) -> np.ndarray:
    """Indices into a split of `size` examples for stream positions start .. start + count - 1.

    Position p of the endless stream is example epoch_permutation(seed, p // size)[p % size].
    """
    epochs, within = np.divmod(np.arange(start, start + count), size)
    if epochs[0] == epochs[-1]:
        return epoch_permutation(seed, int(epochs[0]), size)[within]
    indices = np.empty(count, np.int64)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        indices[here] = epoch_permutation(seed, int(epoch), size)[within[here]]
    return indices


class EpochShuffledDataset(grain.MapDataset):
    """An endless Grain MapDataset over `parent`, epoch after epoch, in `stream_positions` order."""

    _MUTATES_ELEMENT_SPEC = False

    def __init__(self, parent: grain.MapDataset, *, seed: int):
        super().__init__(parent)
        self._seed = int(seed)
        self._size = len(parent)

    def __len__(self) -> int:
        return sys.maxsize

    def __str__(self) -> str:
        return f"EpochShuffledDataset(seed={self._seed})"

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.slice(index)
        (source_index,) = stream_positions(int(index), 1, self._size, self._seed)
        return self._parent[int(source_index)]

    def _getitems(self, indices: Sequence[int]) -> Any:
        return [self[int(index)] for index in indices]
