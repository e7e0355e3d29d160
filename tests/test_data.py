"""Tests for jaxdl.data: datasets (digits builder, TFDS via mock_data, npz) and Grain pipelines."""

import re
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict
from sklearn.datasets import load_digits

from jaxdl.data import (
    DATASET_NAMES,
    DatasetSpec,
    digits_builder,
    eval_batches,
    load_dataset,
    train_iterator,
)
from jaxdl.data.arrays import ArrayTrainIterator, ExampleArrays, in_memory
from jaxdl.data.augment import RandomFlip, RandomShift, augment_batch
from jaxdl.data.npz_source import ArraySplit
from jaxdl.data.order import epoch_permutation, stream_positions
from jaxdl.data.spec import ScaleToFloat
from jaxdl.errors import UserInputError


def data_config(name: str, data_dir: str = "", **overrides) -> ConfigDict:
    fields = dict(
        name=name,
        data_dir=data_dir,
        validation_fraction=0.1,
        input_kind="auto",
        batch_size=32,
        eval_batch_size=64,
        worker_count=0,
        pipeline="stream",  # Raw records, as the loaders read them; in-memory tests say so.
    )
    return ConfigDict({**fields, **overrides})


def index_spec(num_examples: int) -> DatasetSpec:
    """Every split holds examples 0..n-1 with input == label == index, so order is visible."""
    split = ArraySplit(np.arange(num_examples, dtype=np.float32)[:, None], np.arange(num_examples))
    splits = {"train": split, "validation": split, "test": split}
    return DatasetSpec("index", splits, ScaleToFloat("input", (1,)), (1,), num_examples)


@pytest.fixture(params=["stream", "memory"])
def pipeline(request) -> str:
    """Every pipeline test runs on both paths: Grain over records, and decoded arrays."""
    return request.param


def take_labels(iterator, count: int) -> list[list[int]]:
    return [next(iterator)["label"].tolist() for _ in range(count)]


# Digits: a real TFDS builder prepared into a temporary data_dir once for the module.


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def digits(digits_dir) -> DatasetSpec:
    """Streamed: its splits are the builder's raw records."""
    return load_dataset(data_config("digits", digits_dir))


@pytest.fixture(scope="module")
def digits_in_memory(digits_dir) -> DatasetSpec:
    return load_dataset(data_config("digits", digits_dir, pipeline="auto"))


def test_digits_splits_shapes_and_labels(digits):
    assert {split: len(source) for split, source in digits.splits.items()} == {
        "train": 1257,
        "validation": 180,
        "test": 360,
    }
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    for source in digits.splits.values():
        raw = source[0]
        assert raw["image"].dtype == np.uint8 and raw["image"].shape == (8, 8, 1)
        example = digits.preprocess(raw)
        assert example["input"].dtype == np.float32 and example["input"].shape == (8, 8, 1)
        assert example["label"].dtype == np.int32
        labels = np.array([source[i]["label"] for i in range(len(source))])
        assert set(labels.tolist()) == set(range(10))  # Stratified: every class in every split.
    pixels = np.stack(
        [digits.splits["train"][i]["image"] for i in range(len(digits.splits["train"]))]
    )
    assert pixels.max() == 16 and pixels.min() == 0


def test_digits_splits_are_disjoint_and_stratified(digits):
    labels = load_digits().target
    indices = digits_builder.split_indices(labels)
    all_indices = np.concatenate(list(indices.values()))
    assert len(all_indices) == len(set(all_indices.tolist())) == len(labels) == 1797
    for split, split_indices in indices.items():
        source = digits.splits[split]
        prepared = np.bincount([source[i]["label"] for i in range(len(source))], minlength=10)
        np.testing.assert_array_equal(prepared, np.bincount(labels[split_indices], minlength=10))


def test_digits_is_prepared_once_and_without_tensorflow(digits, digits_dir, capsys):
    again = load_dataset(data_config("digits", digits_dir, input_kind="vector"))
    assert "prepared" not in capsys.readouterr().out
    assert again.input_shape == (64,)
    assert again.preprocess(again.splits["test"][0])["input"].shape == (64,)
    # A name TFDS already had would resolve to, or fail to register over, the built-in builder.
    assert tfds.builder_cls(digits_builder.BUILDER_NAME) is digits_builder.SklearnDigits
    assert "tensorflow" not in sys.modules


def test_input_kind_that_does_not_fit_names_the_field(digits_dir):
    with pytest.raises(UserInputError, match=r"data\.input_kind='signal'"):
        load_dataset(data_config("digits", digits_dir, input_kind="signal"))
    with pytest.raises(UserInputError, match=r"data\.input_kind='sound'"):
        load_dataset(data_config("digits", digits_dir, input_kind="sound"))


# TFDS catalog datasets, through tfds.testing.mock_data: no files and no network.


@pytest.mark.parametrize(
    ("name", "shape"),
    [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))],
)
def test_tfds_image_dataset_carves_validation_from_end_of_train(tmp_path, name, shape):
    with tfds.testing.mock_data(num_examples=20):
        spec = load_dataset(data_config(name, str(tmp_path)))
        train, validation, test = (spec.splits[s] for s in ("train", "validation", "test"))
        assert (len(train), len(validation), len(test)) == (18, 2, 20)
        assert spec.input_shape == shape and spec.num_classes == 10
        full_train = validation.source
        np.testing.assert_array_equal(validation[1]["image"], full_train[19]["image"])
        np.testing.assert_array_equal(train[17]["image"], full_train[17]["image"])
        batch = next(eval_batches(spec, "validation", batch_size=4))
        assert batch["input"].shape == (4, *shape) and batch["input"].dtype == np.float32
        assert batch["input"].min() >= 0.0 and batch["input"].max() <= 1.0
        np.testing.assert_array_equal(batch["mask"], [1, 1, 0, 0])


def test_tfds_dataset_not_prepared_says_how_to_prepare(tmp_path):
    with pytest.raises(UserInputError) as error:
        load_dataset(data_config("mnist", str(tmp_path / "empty")))
    message = str(error.value)
    assert "not prepared" in message and "no internet" in message
    assert "tfds build mnist" in message and "--file_format array_record" in message
    assert not (tmp_path / "empty").exists()  # Nothing was downloaded or created.


def test_bad_validation_fraction_names_the_field(tmp_path):
    with (
        tfds.testing.mock_data(num_examples=20),
        pytest.raises(UserInputError, match=r"data\.validation_fraction"),
    ):
        load_dataset(data_config("mnist", str(tmp_path), validation_fraction=1.0))


def test_unknown_dataset_lists_registered_names():
    with pytest.raises(UserInputError) as error:
        load_dataset(data_config("mnsit"))
    message = str(error.value)
    assert "Did you mean: mnist" in message and "npz:<path>" in message
    assert all(name in message for name in DATASET_NAMES)
    assert set(DATASET_NAMES) == {"digits", "mnist", "fashion_mnist", "cifar10"}


# npz files.


def write_npz(path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_vector_carves_validation_from_end_of_train(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(100, 5))
    name = write_npz(
        tmp_path / "v.npz",
        x_train=x_train,
        y_train=np.arange(100) % 3,
        x_test=rng.normal(size=(7, 5)),
        y_test=np.array([0, 1, 2, 3, 0, 1, 2]),
    )
    spec = load_dataset(data_config(name, validation_fraction=0.2))
    assert {split: len(source) for split, source in spec.splits.items()} == {
        "train": 80,
        "validation": 20,
        "test": 7,
    }
    assert spec.input_shape == (5,) and spec.num_classes == 4  # Max label is in test.
    example = spec.preprocess(spec.splits["validation"][0])
    np.testing.assert_allclose(example["input"], x_train[80].astype(np.float32))
    assert example["input"].dtype == np.float32 and example["label"] == 80 % 3


@pytest.mark.parametrize(
    ("example_shape", "input_kind", "input_shape"),
    [((16,), "signal", (16, 1)), ((16, 2), "signal", (16, 2)), ((16, 2), "vector", (32,))],
)
def test_npz_signal_and_vector_shapes(tmp_path, example_shape, input_kind, input_shape):
    x = np.ones((6, *example_shape), np.float32)
    name = write_npz(
        tmp_path / "s.npz", x_train=x, y_train=np.zeros(6, int), x_test=x, y_test=np.ones(6, int)
    )
    spec = load_dataset(data_config(name, input_kind=input_kind))
    assert spec.input_shape == input_shape
    assert spec.preprocess(spec.splits["train"][0])["input"].shape == input_shape


@pytest.mark.parametrize(
    ("example_shape", "input_shape"), [((4, 4), (4, 4, 1)), ((4, 4, 3), (4, 4, 3))]
)
def test_npz_uint8_image_with_own_validation(tmp_path, example_shape, input_shape):
    x = np.full((3, *example_shape), 255, np.uint8)
    y = np.array([0, 1, 1], np.uint8)
    name = write_npz(
        tmp_path / "i.npz", x_train=x, y_train=y, x_val=x[:1], y_val=y[:1], x_test=x, y_test=y
    )
    spec = load_dataset(data_config(name, input_kind="image"))
    assert {split: len(source) for split, source in spec.splits.items()} == {
        "train": 3,
        "validation": 1,
        "test": 3,
    }
    assert spec.input_shape == input_shape and spec.num_classes == 2
    example = spec.preprocess(spec.splits["test"][0])
    assert example["input"].dtype == np.float32
    np.testing.assert_array_equal(example["input"], np.ones(input_shape, np.float32))


def good_arrays() -> dict[str, np.ndarray]:
    x = np.zeros((4, 3), np.float32)
    y = np.array([0, 1, 0, 1])
    return {"x_train": x, "y_train": y, "x_test": x, "y_test": y}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x_train": None}, r"lacks array\(s\) x_train; it has x_test, y_test, y_train"),
        ({"x_val": np.zeros((2, 3))}, r"lacks array\(s\) y_val"),
        ({"y_train": np.array([0, 1, 0])}, r"x_train \(4 examples\) and y_train \(3 labels\)"),
        ({"y_test": np.array([0.0, 1.0, 0.0, 1.0])}, "y_test .* labels must be integer"),
        ({"y_train": np.array([[0], [1], [0], [1]])}, "y_train .* labels must be integer"),
        ({"y_test": np.array([0, -1, 0, 1])}, "y_test .* negative label -1"),
        ({"x_test": np.zeros((4, 2))}, r"x_test .* shape \(2,\), but x_train has \(3,\)"),
        ({"x_test": np.zeros((0, 3)), "y_test": np.zeros(0, int)}, "x_test, y_test .* are empty"),
        ({"x_test": np.zeros((4, 3), np.uint8)}, "x_test .* is uint8 but x_train is float32"),
        ({"x_train": np.array(["a", "b", "c", "d"])}, "x_train .* inputs must be a numeric array"),
        ({"y_train": np.array([0, 1, None, 1], object)}, "y_train .* cannot be read"),
    ],
)
def test_npz_errors_name_file_and_array(tmp_path, change, match):
    arrays = {**good_arrays(), **change}
    path = tmp_path / "bad.npz"
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    with pytest.raises(UserInputError, match=match) as error:
        load_dataset(data_config(f"npz:{path}"))
    assert str(path) in str(error.value)


def test_npz_file_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_dataset(data_config(f"npz:{tmp_path / 'missing.npz'}"))
    with pytest.raises(UserInputError, match="has no file path"):
        load_dataset(data_config("npz:"))
    text = tmp_path / "text.npz"
    text.write_text("not numpy")
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    for path in (text, npy):
        with pytest.raises(
            UserInputError, match=rf"{re.escape(str(path))} .* is not an \.npz archive"
        ):
            load_dataset(data_config(f"npz:{path}"))


def test_npz_validation_carve_that_leaves_nothing(tmp_path):
    name = write_npz(tmp_path / "tiny.npz", **good_arrays())
    with pytest.raises(UserInputError, match=r"data\.validation_fraction=0\.05 leaves an empty"):
        load_dataset(data_config(name, validation_fraction=0.05))


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


def test_train_shards_split_the_examples(pipeline):
    spec = in_memory(index_spec(10), pipeline)
    seen = []
    for shard_index in range(2):
        iterator = train_iterator(
            spec, batch_size=5, seed=0, shard_index=shard_index, shard_count=2
        )
        seen.append(set(next(iterator)["label"].tolist()))
        iterator.close()
    assert seen == [{0, 2, 4, 6, 8}, {1, 3, 5, 7, 9}]


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
