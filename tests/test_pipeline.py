"""Train and eval pipelines (in memory and streamed), the epoch order, on-device augmentations."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdl.data import eval_batches, train_iterator
from jaxdl.data.arrays import ArrayTrainIterator, ExampleArrays, in_memory
from jaxdl.data.augment import RandomFlip, RandomShift, augment_batch
from jaxdl.data.order import epoch_permutation, stream_positions
from jaxdl.errors import UserInputError
from tests.data_helpers import index_spec, take_labels


@pytest.fixture(params=["stream", "memory"])
def pipeline(request) -> str:
    """Every pipeline test runs on both paths: Grain over records, and decoded arrays."""
    return request.param


# Pipelines.


def test_train_order_is_fixed_by_seed_and_changes_each_epoch(pipeline):
    spec = in_memory(index_spec(12), pipeline)
    first, same, other = (train_iterator(spec, batch_size=4, seed=s) for s in (0, 0, 1))
    batches = take_labels(first, 6)
    assert batches == take_labels(same, 6)
    assert batches != take_labels(other, 6)
    epochs = [[label for batch in half for label in batch] for half in (batches[:3], batches[3:])]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(12))
    assert epochs[0] != epochs[1]
    batch = next(first)
    assert batch["input"].shape == (4, 1) and batch["input"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    for iterator in (first, same, other):
        iterator.close()


def test_train_state_restores_the_same_next_batches_across_epochs(pipeline):
    spec = in_memory(index_spec(10), pipeline)
    iterator = train_iterator(spec, batch_size=4, seed=3)
    take_labels(iterator, 2)  # 8 of 10 examples: the next batch crosses into epoch 2.
    state = iterator.get_state()
    expected = take_labels(iterator, 4)
    restored = train_iterator(spec, batch_size=4, seed=3)
    restored.set_state(state)
    assert take_labels(restored, 4) == expected
    iterator.close()
    restored.close()


def test_train_state_round_trips_through_orbax_checkpoint_manager(tmp_path, pipeline):
    spec = in_memory(index_spec(10), pipeline)
    iterator = train_iterator(spec, batch_size=3, seed=7)
    take_labels(iterator, 5)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
        manager.wait_until_finished()
        expected = take_labels(iterator, 4)
        restored = train_iterator(spec, batch_size=3, seed=7)
        manager.restore(
            5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored))
        )
    assert take_labels(restored, 4) == expected
    iterator.close()
    restored.close()


def test_train_shards_split_each_global_batch(pipeline):
    spec = in_memory(index_spec(10), pipeline)
    seen = []
    for shard_index in range(2):
        iterator = train_iterator(
            spec, batch_size=5, seed=0, shard_index=shard_index, shard_count=2
        )
        seen.append(next(iterator)["label"].tolist())
        iterator.close()
    # Halves of the global batch, epoch_permutation(0, 0, 10) (pinned below).
    assert seen == [[0, 2, 9, 1, 8], [5, 4, 3, 6, 7]]


def test_train_with_a_worker_process_gives_the_same_batches():
    spec = index_spec(10)
    in_process = train_iterator(spec, batch_size=4, seed=2)
    with_worker = train_iterator(spec, batch_size=4, seed=2, worker_count=1)
    assert take_labels(with_worker, 4) == take_labels(in_process, 4)
    with_worker.close()
    in_process.close()


def test_eval_batches_pad_the_last_batch_and_mask_it(pipeline):
    batches = list(eval_batches(in_memory(index_spec(10), pipeline), "test", batch_size=4))
    assert len(batches) == 3
    assert [b["label"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]]
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(batches[-1]["input"][:, 0], [8, 9, 0, 0])
    for batch in batches:
        assert batch["mask"].dtype == np.float32 and batch["input"].shape == (4, 1)
    assert batches[0]["mask"].tolist() == [1, 1, 1, 1]


def test_batch_size_must_be_positive(pipeline):
    spec = in_memory(index_spec(4), pipeline)
    with pytest.raises(UserInputError, match=r"data\.batch_size"):
        train_iterator(spec, batch_size=0, seed=0)
    with pytest.raises(UserInputError, match=r"data\.eval_batch_size"):
        eval_batches(spec, "test", batch_size=-1)
    with pytest.raises(UserInputError, match=r"data\.worker_count"):
        train_iterator(spec, batch_size=2, seed=0, worker_count=-1)


def test_memory_and_stream_give_the_same_examples_in_the_same_order(digits, digits_in_memory):
    """Real digits, 3 epochs and a bit, batches crossing epoch boundaries: equal bit for bit."""
    streamed = digits
    assert not isinstance(streamed.splits["train"], ExampleArrays)
    from_stream = train_iterator(streamed, batch_size=100, seed=5)
    from_memory = train_iterator(digits_in_memory, batch_size=100, seed=5)
    assert isinstance(from_memory, ArrayTrainIterator)
    for _ in range(40):  # 4,000 examples: over three epochs of 1,257.
        a, b = next(from_stream), next(from_memory)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])
    # Either iterator resumes from the other's state.
    from_memory.set_state(from_stream.get_state())
    np.testing.assert_array_equal(next(from_memory)["input"], next(from_stream)["input"])
    for split in ("validation", "test"):
        pairs = zip(
            eval_batches(streamed, split, batch_size=64),
            eval_batches(digits_in_memory, split, batch_size=64),
            strict=True,
        )
        for a, b in pairs:
            for key in ("input", "label", "mask"):
                np.testing.assert_array_equal(a[key], b[key])
    from_stream.close()


def test_pipeline_auto_holds_small_datasets_and_streams_large_ones(monkeypatch):
    spec = index_spec(10)
    assert isinstance(in_memory(spec, "auto").splits["train"], ExampleArrays)
    assert in_memory(spec, "stream") is spec
    monkeypatch.setattr("jaxdl.data.arrays.AUTO_MEMORY_LIMIT_BYTES", 10)
    assert in_memory(spec, "auto") is spec
    assert isinstance(in_memory(spec, "memory").splits["test"], ExampleArrays)
    with pytest.raises(UserInputError, match=r"data\.pipeline='disk'.*auto, memory, stream"):
        in_memory(spec, "disk")


def test_epoch_permutations_are_fixed_and_differ_by_seed_and_epoch():
    first = epoch_permutation(0, 0, 1000)
    assert sorted(first.tolist()) == list(range(1000))
    # Pinned values: the order of every run depends on them; a change must be deliberate.
    assert epoch_permutation(0, 0, 10).tolist() == [0, 2, 9, 1, 8, 5, 4, 3, 6, 7]
    assert not np.array_equal(first, epoch_permutation(0, 1, 1000))
    assert not np.array_equal(first, epoch_permutation(1, 0, 1000))
    np.testing.assert_array_equal(stream_positions(995, 10, 1000, 0)[:5], first[995:])


# On-device augmentations.


def _images(batch: int = 16) -> np.ndarray:
    return np.random.default_rng(0).uniform(1, 2, (batch, 6, 5, 2)).astype(np.float32)


def test_shift_translates_each_image_with_zero_fill():
    images = _images()
    shifted = np.asarray(jax.jit(RandomShift(1))(jnp.asarray(images), jax.random.PRNGKey(3)))
    assert shifted.shape == images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    offsets_seen = set()
    for original, out in zip(padded, shifted, strict=True):
        matches = [
            (dy, dx)
            for dy in range(3)
            for dx in range(3)
            if np.array_equal(out, original[dy : dy + 6, dx : dx + 5])
        ]
        assert len(matches) == 1
        offsets_seen.add(matches[0])
    assert len(offsets_seen) > 3  # Per-example draws, not one shift for the whole batch.


def test_flip_mirrors_about_half_of_the_images():
    images = _images(64)
    flipped = np.asarray(RandomFlip()(jnp.asarray(images), jax.random.PRNGKey(0)))
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(flipped, images, strict=True)]
    unchanged = [np.array_equal(o, i) for o, i in zip(flipped, images, strict=True)]
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))
    assert 16 < sum(mirrored) < 48


def test_augment_batch_is_fixed_by_key_and_leaves_labels_alone():
    augmentations = (RandomShift(1), RandomFlip())
    batch = {"input": jnp.asarray(_images()), "label": jnp.arange(16)}
    key = jax.random.PRNGKey(1)
    once = augment_batch(augmentations, batch, key)
    again = augment_batch(augmentations, batch, key)
    other = augment_batch(augmentations, batch, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(once["input"], again["input"])
    assert not np.array_equal(once["input"], other["input"])
    np.testing.assert_array_equal(once["label"], batch["label"])
    assert augment_batch((), batch, key) is batch
