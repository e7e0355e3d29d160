"""Moving train batches to the devices several steps at a time.

A transfer to the device has a fixed cost (about 0.1-0.2 ms on CPU here) that a small model's
step (about 1 ms for digits_mlp) cannot hide. `BatchFeed` stacks the batches of up to
`steps_per_transfer` consecutive steps into one array per key and places it once; the jitted
step picks its own batch with `select_batch(chunk, state.step)`. Chunks are aligned to step
numbers (rows of step s sit at s % steps_per_transfer), so a resumed run places every batch
where an uninterrupted run would.

The feed is also what the checkpoint saves as the data position: `get_state` is the iterator's
state after the last batch a step consumed, not after the last batch the feed read ahead.
"""

import json
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from jaxdl.engine import sharding

# Batches of one transfer take at most this much host and device memory (per process).
TRANSFER_BYTES = 32 * 2**20
MAX_STEPS_PER_TRANSFER = 64


def steps_per_transfer(batch_bytes: int) -> int:
    """How many steps' batches one transfer carries: 1 for batches of 32 MiB or more."""
    return int(np.clip(TRANSFER_BYTES // max(batch_bytes, 1), 1, MAX_STEPS_PER_TRANSFER))


def chunk_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """(steps, batch, ...) arrays: the batch axis split over the mesh, as a single batch is."""
    return sharding.batch_sharding(mesh, leading=1)


def select_batch(chunk: dict[str, jax.Array], step: jax.Array) -> dict[str, jax.Array]:
    """Inside the jitted step: the batch of `step` from its chunk."""
    rows = next(iter(chunk.values())).shape[0]
    return {key: value[step % rows] for key, value in chunk.items()}


class BatchFeed:
    """Chunks of consecutive train batches, placed on the devices, from a resumable iterator."""

    def __init__(self, iterator: Any, mesh: jax.sharding.Mesh, steps_per_transfer: int):
        self._iterator = iterator
        self._sharding = chunk_sharding(mesh)
        self.steps_per_transfer = steps_per_transfer
        self._chunk: dict[str, jax.Array] | None = None
        self._chunk_start = 0
        self._first_row = 0
        self._row_states: list[Any] = []
        self._consumed_state = iterator.get_state()

    def next_chunk(self, step: int) -> dict[str, jax.Array]:
        """The chunk holding the batch of `step`, which counts as consumed from now on."""
        k = self.steps_per_transfer
        if self._chunk is None or not self._chunk_start <= step < self._chunk_start + k:
            self._load(step)
        self._consumed_state = self._row_states[step - self._chunk_start - self._first_row]
        return self._chunk

    def _load(self, step: int) -> None:
        k = self.steps_per_transfer
        self._chunk_start = step - step % k
        self._first_row = step % k  # A resume mid-chunk leaves the rows before it unused.
        batches, self._row_states = [], []
        for _ in range(k - self._first_row):
            batches.append(next(self._iterator))
            self._row_states.append(self._iterator.get_state())
        stacked = {}
        for key in batches[0]:
            rows = np.stack([batch[key] for batch in batches])
            if self._first_row:
                unused = np.zeros((self._first_row, *rows.shape[1:]), rows.dtype)
                rows = np.concatenate([unused, rows])
            stacked[key] = jax.make_array_from_process_local_data(self._sharding, rows)
        self._chunk = stacked

    # The protocol grain.checkpoint.CheckpointSave/CheckpointRestore use for non-Grain iterators:
    # JSON bytes, written to the same file and in the same form as a Grain iterator's state.
    def get_state(self) -> bytes:
        return json.dumps(self._consumed_state, indent=4).encode()

    def set_state(self, state: bytes) -> None:
        self._consumed_state = json.loads(state)
        self._iterator.set_state(self._consumed_state)
        self._chunk = None

    def start_prefetch(self) -> None:
        """Nothing to start: chunks are read when a step needs one."""

    def close(self) -> None:
        self._iterator.close()
