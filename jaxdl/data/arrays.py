"""Datasets small enough for memory: decoded once into arrays, then served by index.

Per-example Python (reading a record, preprocessing it, stacking a batch) costs far more than a
small model's step. A split held as stacked arrays gives a batch with one fancy-index per key,
in the same order the streaming Grain pipeline would give it (see order.py).
"""

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain
import numpy as np

from jaxdl.data.order import EpochOrder, local_batch_positions, restored_batch
from jaxdl.data.spec import DatasetSpec, RecordSource, batch_nbytes
from jaxdl.errors import UserInputError

PIPELINES = ("auto", "memory", "stream")
# 'auto' decodes a dataset into memory when its preprocessed splits take at most this much.
AUTO_MEMORY_LIMIT_BYTES = 2 * 2**30

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class ExampleArrays:
    """A split as stacked, already preprocessed examples; each record is one example."""

    arrays: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {key: value[index] for key, value in self.arrays.items()}

    def take(self, indices: np.ndarray | slice) -> Batch:
        return {key: value[indices] for key, value in self.arrays.items()}


def as_is(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The preprocess of decoded splits: their records already are examples."""
    return example


def decode_split(source: RecordSource, preprocess: Callable[[Any], Batch]) -> ExampleArrays:
    """Reads and preprocesses every record of `source`, once."""
    return ExampleArrays(stack([preprocess(source[index]) for index in range(len(source))]))


def stack(examples: list[Batch]) -> Batch:
    """Examples stacked into a batch, key by key, as Grain's `batch` stacks them."""
    return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def decoded_bytes(spec: DatasetSpec) -> int:
    """Roughly what the decoded splits take, from the declared features."""
    return batch_nbytes(spec, sum(len(split) for split in spec.splits.values()))


def in_memory(spec: DatasetSpec, pipeline: str) -> DatasetSpec:
    """`spec` with every split decoded into memory, or `spec` itself when it should stream.

    pipeline: 'memory' always decodes, 'stream' never does, and 'auto' decodes when the
    decoded splits take at most AUTO_MEMORY_LIMIT_BYTES.
    """
    if pipeline not in PIPELINES:
        raise UserInputError(
            f"data.pipeline={pipeline!r} is not one of {', '.join(PIPELINES)}. Use 'auto' to hold "
            "datasets that fit in memory as arrays and stream the rest."
        )
    if pipeline == "stream" or (
        pipeline == "auto" and decoded_bytes(spec) > AUTO_MEMORY_LIMIT_BYTES
    ):
        return spec
    splits = {name: decode_split(src, spec.preprocess) for name, src in spec.splits.items()}
    return dataclasses.replace(spec, splits=splits, preprocess=as_is)


class ArrayTrainIterator(grain.DatasetIterator):
    """Endless train batches from an in-memory split, in the order the Grain pipeline gives.

    Batch b is this process's slice of global batch b (order.py). Its state is the streamed
    pipeline's, {'next_index': global positions consumed}, so a checkpoint written by either
    pipeline, with any process count, resumes with the other.
    """

    def __init__(
        self,
        split: ExampleArrays,
        *,
        batch_size: int,
        seed: int,
        shard_index: int,
        shard_count: int,
        epoch_order: EpochOrder | None = None,
    ):
        super().__init__()
        self._split = split
        self._positions = functools.partial(
            local_batch_positions,
            batch_size=batch_size,
            seed=seed,
            size=len(split),
            shard_index=shard_index,
            shard_count=shard_count,
            epoch_order=epoch_order,
        )
        self._global_batch = batch_size * shard_count
        self._next_batch = 0

    def __next__(self) -> Batch:
        rows = self._positions(self._next_batch)
        self._next_batch += 1
        return self._split.take(rows)

    def get_state(self) -> dict[str, Any]:
        return {"next_index": self._next_batch * self._global_batch}

    def set_state(self, state: dict[str, Any]) -> None:
        self._next_batch = restored_batch(state, self._global_batch)

    def __str__(self) -> str:
        return f"ArrayTrainIterator(state={json.dumps(self.get_state())})"


def array_eval_batches(
    split: ExampleArrays, batch_size: int, shard_index: int = 0, shard_count: int = 1
) -> Iterator[Batch]:
    """This process's slices of `split` in order (eval_batches), zero-padded, with a 'mask'."""
    for start in eval_starts(len(split), batch_size, shard_index, shard_count):
        yield pad_batch(split.take(slice(start, start + batch_size)), batch_size)


def eval_starts(size: int, batch_size: int, shard_index: int, shard_count: int) -> range:
    """The first row of each of this process's eval batches; some may be past the end."""
    global_batch = batch_size * shard_count
    # Every process gets as many batches as the largest share needs: the steps are collective.
    return range(
        shard_index * batch_size, math.ceil(size / global_batch) * global_batch, global_batch
    )


def pad_batch(batch: Batch, batch_size: int) -> Batch:
    """`batch` zero-padded to `batch_size` rows, plus 'mask' (B,) float32: 1 for real rows."""
    num_real = len(next(iter(batch.values())))
    padded = {
        key: np.pad(value, [(0, batch_size - num_real)] + [(0, 0)] * (value.ndim - 1))
        for key, value in batch.items()
    }
    padded["mask"] = (np.arange(batch_size) < num_real).astype(np.float32)
    return padded
