"""Grain pipelines: an endless, resumable train stream and single padded passes for evaluation."""

from collections.abc import Callable, Iterator, Sequence

import grain
import numpy as np
from absl import flags

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
    augmentations: Sequence[Callable[[Batch, np.random.Generator], Batch]] = (),
) -> grain.DatasetIterator:
    """Endless {'input': (B, *input_shape) float32, 'label': (B,) int32} batches of train.

    The order depends only on `seed`, changes every epoch, and resumes exactly through
    get_state()/set_state() or grain.checkpoint.CheckpointSave/CheckpointRestore. This process
    reads examples shard_index, shard_index + shard_count, ... of the train split.
    `augmentations` (see augment.py) run after preprocessing, each seeded from `seed`.
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
    records = grain.MapDataset.source(spec.splits["train"])[shard_index::shard_count]
    if len(records) == 0:
        raise UserInputError(
            f"the train split of dataset {spec.name!r} has {len(spec.splits['train'])} examples, "
            f"too few to give each of {shard_count} processes one."
        )
    # Shuffling before repeating lets repeat reseed the shuffle, so each epoch has a new order.
    examples = records.shuffle(seed).repeat().map(spec.preprocess)
    for offset, augmentation in enumerate(augmentations, start=1):
        examples = examples.random_map(augmentation, seed=seed + offset)
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
            num_real = len(batch["label"])
            padded = {
                key: np.pad(value, [(0, batch_size - num_real)] + [(0, 0)] * (value.ndim - 1))
                for key, value in batch.items()
            }
            padded["mask"] = (np.arange(batch_size) < num_real).astype(np.float32)
            yield padded
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
