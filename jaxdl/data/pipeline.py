"""The train stream and the eval passes, from in-memory arrays or streamed through Grain.

A dataset decoded into memory (arrays.py) is served by index with no per-example Python. Any
other dataset streams through Grain: random access to its records, per-example preprocessing,
and optional worker processes. Both give the same batches in the same order for a seed, and
both read only this process's share of every global batch (order.py).
"""

import dataclasses
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np
from absl import flags

from jaxdl.data.arrays import (
    ArrayTrainIterator,
    ExampleArrays,
    array_eval_batches,
    eval_starts,
    pad_batch,
    stack,
)
from jaxdl.data.imbalance import train_epochs
from jaxdl.data.order import EpochOrder, local_batch_positions, restored_batch
from jaxdl.data.spec import DatasetSpec, RecordSource, example_batch
from jaxdl.errors import UserInputError

Batch = dict[str, np.ndarray]
# Examples read ahead per process. Grain's default, 500 elements, suited elements that were
# examples; here an element is a whole batch.
PREFETCH_EXAMPLES = 512


def train_iterator(
    spec: DatasetSpec,
    *,
    batch_size: int,
    seed: int,
    worker_count: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    sampler: str = "uniform",
) -> grain.DatasetIterator:
    """Endless {'input': (B, *input_shape) float32, 'label': (B,) int32} batches of train.

    One global stream of batches of batch_size * shard_count examples, fixed by `seed` and
    independent of shard_count (order.py); this process gets rows [shard_index * batch_size,
    (shard_index + 1) * batch_size) of each. get_state()/set_state() (or
    grain.checkpoint.CheckpointSave/CheckpointRestore) resume exactly, also with another
    shard_count as long as the global batch is the same.
    `worker_count` applies to streamed datasets only and does not change the batches.
    `sampler` 'balanced' draws every class equally often (data.sampler, imbalance.py).
    Close the iterator when done: worker processes hold shared memory.
    """
    _check_positive(batch_size, "data.batch_size")
    if not isinstance(worker_count, int | np.integer) or worker_count < 0:
        raise UserInputError(
            f"data.worker_count must be an integer >= 0 (0 = no worker processes), "
            f"got {worker_count!r}."
        )
    _check_shard(shard_index, shard_count)
    train = spec.splits["train"]
    epoch_order = train_epochs(spec, sampler)  # None: the uniform order; checks the sampler.
    if spec.batching is not None:
        return spec.batching.train_iterator(
            train, batch_size=batch_size, seed=seed, shard_count=shard_count
        )
    if len(train) == 0:
        raise UserInputError(f"the train split of dataset {spec.name!r} is empty.")
    if isinstance(train, ExampleArrays):
        return ArrayTrainIterator(
            train,
            batch_size=batch_size,
            seed=seed,
            shard_index=shard_index,
            shard_count=shard_count,
            epoch_order=epoch_order,
        )
    read = _TrainBatchReader(
        train, spec.preprocess, batch_size, seed, shard_index, shard_count, epoch_order
    )
    return StreamedTrainIterator(read, global_batch=batch_size * shard_count, workers=worker_count)


class StreamedTrainIterator(grain.DatasetIterator):
    """Train batches read by Grain, element b of the MapDataset being this process's batch b.

    Its state is ArrayTrainIterator's, {'next_index': global positions consumed}, not Grain's:
    a restore rebuilds the pipeline at that batch, so it depends on neither Grain's iterator
    state nor the worker count (workers take whole batches in turn, which keeps the order).
    """

    def __init__(self, read: "_TrainBatchReader", *, global_batch: int, workers: int):
        super().__init__()
        self._read = read
        self._global_batch = global_batch
        self._workers = workers
        self._next_batch = 0
        self._batches: grain.DatasetIterator | None = None  # Opened at the first batch.

    def _open(self) -> grain.DatasetIterator:
        batches = grain.MapDataset.range(self._next_batch, sys.maxsize).map(self._read)
        dataset = batches.to_iter_dataset(_read_options(self._read.batch_size))
        if self._workers > 0:
            _mark_absl_flags_parsed()
            dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers))
        return iter(dataset)

    def __next__(self) -> Batch:
        self._assert_not_closed()
        if self._batches is None:
            self._batches = self._open()
        batch = next(self._batches)
        self._next_batch += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"next_index": self._next_batch * self._global_batch}

    def set_state(self, state: dict[str, Any]) -> None:
        next_batch = restored_batch(state, self._global_batch)
        self._close_batches()
        self._next_batch = next_batch

    def start_prefetch(self) -> None:
        self._assert_not_closed()
        if self._batches is None:
            self._batches = self._open()
        self._batches.start_prefetch()

    def close(self) -> None:
        self._close_batches()
        super().close()

    def _close_batches(self) -> None:
        if self._batches is not None:
            self._batches.close()  # Stops the worker processes, if any.
            self._batches = None

    def __str__(self) -> str:
        return f"StreamedTrainIterator(state={self.get_state()}, workers={self._workers})"


def eval_batches(
    spec: DatasetSpec, split: str, *, batch_size: int, shard_index: int = 0, shard_count: int = 1
) -> Iterator[Batch]:
    """One pass over this process's share of `split`, in its fixed order.

    Every process gets ceil(len(split) / (batch_size * shard_count)) batches; batch k holds rows
    [(k * shard_count + shard_index) * batch_size, ...) of the split, zero-padded to
    `batch_size` rows (maybe all padding). 'mask' (B,) float32 is 1 for real rows, 0 for padding.
    """
    _check_positive(batch_size, "data.eval_batch_size")
    _check_shard(shard_index, shard_count)
    if split not in spec.splits:
        raise ValueError(f"split must be one of {tuple(spec.splits)}, got {split!r}.")
    records = spec.splits[split]
    if spec.batching is not None:
        return spec.batching.eval_batches(records, batch_size=batch_size, shard_count=shard_count)
    if isinstance(records, ExampleArrays):
        return array_eval_batches(records, batch_size, shard_index, shard_count)
    # No rows to read the shapes from in an all-padding batch: they are the spec's.
    empty = example_batch(spec, 0)
    starts = eval_starts(len(records), batch_size, shard_index, shard_count)
    batches = grain.MapDataset.range(starts.start, starts.stop, starts.step).map(
        _EvalBatchReader(records, spec.preprocess, batch_size, empty)
    )
    # A separate generator so that the checks above run at the call, not at the first batch.
    return _closing(iter(batches.to_iter_dataset(_read_options(batch_size))))


@dataclasses.dataclass(frozen=True)
class _TrainBatchReader:
    """Global batch b -> this process's rows of it, read and preprocessed. Pickled to workers."""

    records: RecordSource
    preprocess: Callable[[Any], Batch]
    batch_size: int
    seed: int
    shard_index: int
    shard_count: int
    epoch_order: EpochOrder | None = None

    def __call__(self, batch: int) -> Batch:
        rows = local_batch_positions(
            batch,
            batch_size=self.batch_size,
            seed=self.seed,
            size=len(self.records),
            shard_index=self.shard_index,
            shard_count=self.shard_count,
            epoch_order=self.epoch_order,
        )
        return stack([self.preprocess(self.records[int(row)]) for row in rows])


@dataclasses.dataclass(frozen=True)
class _EvalBatchReader:
    """First row -> the padded batch of rows start .. start + batch_size - 1 that exist."""

    records: RecordSource
    preprocess: Callable[[Any], Batch]
    batch_size: int
    empty: Batch

    def __call__(self, start: int) -> Batch:
        rows = range(start, min(start + self.batch_size, len(self.records)))
        examples = [self.preprocess(self.records[row]) for row in rows]
        return pad_batch(stack(examples) if examples else self.empty, self.batch_size)


def _closing(batches: grain.DatasetIterator) -> Iterator[Batch]:
    try:
        yield from batches
    finally:
        batches.close()


def _read_options(batch_size: int) -> grain.ReadOptions:
    buffer = max(2, math.ceil(PREFETCH_EXAMPLES / batch_size))
    return grain.ReadOptions(num_threads=min(16, buffer), prefetch_buffer_size=buffer)


def _check_positive(batch_size: int, field: str) -> None:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size <= 0
    ):
        raise UserInputError(f"{field} must be a positive integer, got {batch_size!r}.")


def _check_shard(shard_index: int, shard_count: int) -> None:
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count}).")


def _mark_absl_flags_parsed() -> None:
    # Grain reads its own absl flags when it starts workers. Programs not launched through
    # absl.app (the CLI, pytest) never parse them, and reading unparsed flags is an error.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
