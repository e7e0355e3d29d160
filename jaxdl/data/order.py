"""The order in which training examples are seen: one global stream, fixed by the seed.

Position p of the endless stream is example epoch_permutation(seed, p // size)[p % size] of the
whole train split, whatever the number of processes. Global batch b is positions
[b * G, (b + 1) * G) for a global batch of G examples, and process i of n reads only its slice
of it, rows [i * G / n, (i + 1) * G / n). The iterator state is the global position, so a
checkpoint written by any number of processes resumes on any other with nothing skipped or
repeated. Both pipelines (in-memory arrays and streamed Grain records) follow this order.

The permutation is an argsort of raw Philox output: NumPy guarantees the bit streams of its bit
generators across versions, which it does not for `Generator.permutation`, and it is computed
for a whole epoch at once (about 0.1 ms for 10,000 examples) instead of one index at a time.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# (seed, epoch, size) -> the `size` split indices of that epoch's positions.
EpochOrder = Callable[[int, int, int], np.ndarray]


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """A permutation of range(size), different for every (seed, epoch). Read-only."""
    key = np.array([seed % 2**64, epoch % 2**64], dtype=np.uint64)
    bits = np.random.Philox(key=key).random_raw(size)
    order = np.argsort(bits, kind="stable")
    order.flags.writeable = False  # Cached and shared: nobody may change it.
    return order


def stream_positions(
    start: int, count: int, size: int, seed: int, epoch_order: EpochOrder | None = None
) -> np.ndarray:
    """Indices into a split of `size` examples for stream positions start .. start + count - 1.

    Position p of the endless stream is example epoch_order(seed, p // size)[p % size];
    epoch_order is epoch_permutation unless given (data.sampler='balanced': imbalance.py).
    """
    order = epoch_permutation if epoch_order is None else epoch_order
    epochs, within = np.divmod(np.arange(start, start + count), size)
    if epochs[0] == epochs[-1]:
        return order(seed, int(epochs[0]), size)[within]
    indices = np.empty(count, np.int64)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        indices[here] = order(seed, int(epoch), size)[within[here]]
    return indices


def local_batch_positions(
    batch: int,
    *,
    batch_size: int,
    seed: int,
    size: int,
    shard_index: int,
    shard_count: int,
    epoch_order: EpochOrder | None = None,
) -> np.ndarray:
    """Indices into the split of this process's `batch_size` rows of global batch `batch`."""
    start = (batch * shard_count + shard_index) * batch_size
    return stream_positions(start, batch_size, size, seed, epoch_order)


def restored_batch(state: Mapping[str, Any], global_batch: int) -> int:
    """The global batch a train iterator state points at, for a global batch of this size.

    `state` is {'next_index': global positions consumed}, as written with any process count.
    Raises ValueError when that is not a whole number of global batches.
    """
    next_index = _next_index(state)
    batches, remainder = divmod(next_index, global_batch)
    if remainder or next_index < 0:
        raise ValueError(
            f"the data state says {next_index} train examples were consumed, not a whole number "
            f"of global batches of {global_batch}: the global batch size changed since the "
            "checkpoint was written. Resume with the global batch size it was written with."
        )
    return batches


def _next_index(state: Mapping[str, Any]) -> int:
    if "next_index" in state:
        return int(state["next_index"])
    # Written by jaxdl's earlier streamed pipeline with data.worker_count > 0: Grain's mp_prefetch
    # interleaved one iterator per worker, each counting the examples it gave. Their sum is the
    # position; the examples before it were in another order then, so this epoch is approximate.
    if "iterators_in_use_states" in state:
        return sum(int(worker["next_index"]) for worker in state["iterators_in_use_states"])
    raise ValueError(f"not a train data state: {dict(state)!r} has no 'next_index'.")
