"""Tests for jaxdl.data loaders: the digits builder, TFDS via mock_data, npz files.

The pipelines that read them are tested in test_pipeline.py.
"""

import re
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from jaxdl.data import (
    DATASET_NAMES,
    digits_builder,
    eval_batches,
    load_dataset,
)
from jaxdl.errors import UserInputError
from tests.data_helpers import data_config


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
    images = {"digits", "mnist", "fashion_mnist", "cifar10", "imagenet2012", "celeb_a"}
    sequences = {"stdlib_chars", "tiny_shakespeare", "lm1b", "imdb_reviews"} | {
        f"algorithmic/{task}" for task in ("copy", "reverse", "sort", "addition", "brackets")
    }
    sequences |= {"wmt14_translate/de-en"}
    graphs = {"karate_club", "sbm", "karate_club_links", "sbm_links", "ogbg_molpcba"} | {
        f"graph_{name}" for name in ("cycles", "components", "triangles", "motifs")
    }
    assert set(DATASET_NAMES) == images | sequences | graphs


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
