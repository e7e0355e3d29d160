"""The train stream and the eval passes, from in-memory arrays or streamed through Grain.

A dataset decoded into memory (arrays.py) is served by index with no per-example Python. Any
other dataset streams through Grain: random access to its records, per-example preprocessing,
and optional worker processes. Both give the same batches in the same order for a seed.
"""

from collections.abc import Iterator

import grain
import numpy as np
from absl import flags

from jaxdl.data.arrays import ArrayTrainIterator, ExampleArrays, array_eval_batches, pad_batch
from jaxdl.data.order import EpochShuffledDataset
from jaxdl.data.spec import DatasetSpec
from jaxdl.errors import UserInputError

Batch = dict[str, np.ndarray]


def train_iterator(
    spec: DatasetSpec,
    *,
    batch_size: int,
    seed: int,
    worker_count: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.DatasetIterator:
    """Endless {'input': (B, *input_shape) float32, 'label': (B,) int32} batches of train.

    The order depends only on `seed` (order.py), changes every epoch, and resumes exactly through
    get_state()/set_state() or grain.checkpoint.CheckpointSave/CheckpointRestore. This process
    reads examples shard_index, shard_index + shard_count, ... of the train split.
    `worker_count` applies to streamed datasets only: in-memory ones need no workers.
    Close the iterator when done: worker processes hold shared memory.
    """
    _check_positive(batch_size, "data.batch_size")
    if not isinstance(worker_count, int | np.integer) or worker_count < 0:
        raise UserInputError(
            f"data.worker_count must be an integer >= 0 (0 = no worker processes), "
            f"got {worker_count!r}."
        )
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count}).")
    train = spec.splits["train"]
    if len(range(shard_index, len(train), shard_count)) == 0:
        raise UserInputError(
            f"the train split of dataset {spec.name!r} has {len(train)} examples, "
            f"too few to give each of {shard_count} processes one."
        )
    if isinstance(train, ExampleArrays):
        return ArrayTrainIterator(
            train,
            batch_size=batch_size,
            seed=seed,
            shard_index=shard_index,
            shard_count=shard_count,
        )
    records = grain.MapDataset.source(train)[shard_index::shard_count]
    examples = EpochShuffledDataset(records, seed=seed).map(spec.preprocess)
    dataset = examples.to_iter_dataset().batch(batch_size, drop_remainder=True)
    if worker_count > 0:
        _mark_absl_flags_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(dataset)


def eval_batches(spec: DatasetSpec, split: str, *, batch_size: int) -> Iterator[Batch]:
    """One pass over `split` in its fixed order, every batch exactly `batch_size` long.

    The last batch is zero-padded; 'mask' (B,) float32 is 1 for real examples, 0 for padding.
    """
    _check_positive(batch_size, "data.eval_batch_size")
    if split not in spec.splits:
        raise ValueError(f"split must be one of {tuple(spec.splits)}, got {split!r}.")
    if isinstance(spec.splits[split], ExampleArrays):
        return array_eval_batches(spec.splits[split], batch_size)
    dataset = (
        grain.MapDataset.source(spec.splits[split])
        .map(spec.preprocess)
        .to_iter_dataset()
        .batch(batch_size)
    )
    # A separate generator so that the checks above run at the call, not at the first batch.
    return _padded(iter(dataset), batch_size)


def _padded(batches: grain.DatasetIterator, batch_size: int) -> Iterator[Batch]:
    try:
        for batch in batches:
            yield pad_batch(batch, batch_size)
    finally:
        batches.close()


def _check_positive(batch_size: int, field: str) -> None:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size <= 0
    ):
        raise UserInputError(f"{field} must be a positive integer, got {batch_size!r}.")


def _mark_absl_flags_parsed() -> None:
    # Grain reads its own absl flags when it starts workers. Programs not launched through
    # absl.app (the CLI, pytest) never parse them, and reading unparsed flags is an error.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
