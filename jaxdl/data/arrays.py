"""Datasets small enough for memory: decoded once into arrays, then served by index.

Per-example Python (reading a record, preprocessing it, stacking a batch) costs far more than a
small model's step. A split held as stacked arrays gives a batch with one fancy-index per key,
in the same order the streaming Grain pipeline would give it (see order.py).
"""

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain
import numpy as np

from jaxdl.data.order import stream_positions
from jaxdl.data.spec import DatasetSpec, RecordSource
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
    examples = [preprocess(source[index]) for index in range(len(source))]
    return ExampleArrays({key: np.stack([ex[key] for ex in examples]) for key in examples[0]})


def decoded_bytes(spec: DatasetSpec) -> int:
    """Roughly what the decoded splits take: float32 inputs plus an int32 label per example."""
    per_example = 4 * (math.prod(spec.input_shape) + 1)
    return per_example * sum(len(split) for split in spec.splits.values())


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

    Its state is the Grain pipeline's, {'next_index': examples consumed by this process}, so a
    checkpoint written by either pipeline resumes with the other.
    """

    def __init__(
        self,
        split: ExampleArrays,
        *,
        batch_size: int,
        seed: int,
        shard_index: int,
        shard_count: int,
    ):
        super().__init__()
        self._split = split
        self._rows = np.arange(shard_index, len(split), shard_count)
        self._batch_size = batch_size
        self._seed = seed
        self._next_index = 0

    def __next__(self) -> Batch:
        positions = stream_positions(
            self._next_index, self._batch_size, len(self._rows), self._seed
        )
        self._next_index += self._batch_size
        return self._split.take(self._rows[positions])

    def get_state(self) -> dict[str, Any]:
        return {"next_index": self._next_index}

    def set_state(self, state: dict[str, Any]) -> None:
        self._next_index = int(state["next_index"])

    def __str__(self) -> str:
        return f"ArrayTrainIterator(state={json.dumps(self.get_state())})"


def array_eval_batches(split: ExampleArrays, batch_size: int) -> Iterator[Batch]:
    """Slices of `split` in order, the last one zero-padded, with a 'mask' of real examples."""
    for start in range(0, len(split), batch_size):
        yield pad_batch(split.take(slice(start, start + batch_size)), batch_size)


def pad_batch(batch: Batch, batch_size: int) -> Batch:
    """`batch` zero-padded to `batch_size` rows, plus 'mask' (B,) float32: 1 for real rows."""
    num_real = len(next(iter(batch.values())))
    padded = {
        key: np.pad(value, [(0, batch_size - num_real)] + [(0, 0)] * (value.ndim - 1))
        for key, value in batch.items()
    }
    padded["mask"] = (np.arange(batch_size) < num_real).astype(np.float32)
    return padded
