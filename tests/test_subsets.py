"""Label subsets: data.classes renumbers labels, data.train_examples_per_class limits train."""

from pathlib import Path

import numpy as np
import pytest

from jaxdl.data import load_dataset
from jaxdl.errors import UserInputError
from tests.data_helpers import data_config


def _labelled_npz(tmp_path: Path) -> str:
    """Train labels 0, 1, 2, 3, 0, 1, ... (input == index), test 0..3 twice, validation 3, 1."""
    train = np.arange(20)
    path = tmp_path / "labels.npz"
    np.savez(
        path,
        x_train=train[:, None].astype(np.float32),
        y_train=train % 4,
        x_val=np.array([[100.0], [101.0]], np.float32),
        y_val=np.array([3, 1]),
        x_test=np.arange(8)[:, None].astype(np.float32),
        y_test=np.arange(8) % 4,
    )
    return f"npz:{path}"


def _split(spec, name) -> tuple[list[int], list[int]]:
    examples = [spec.preprocess(spec.splits[name][i]) for i in range(len(spec.splits[name]))]
    return [int(e["input"][0]) for e in examples], [int(e["label"]) for e in examples]


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_subset_renumbers_labels_and_limits_train_per_class(tmp_path, pipeline):
    config = data_config(_labelled_npz(tmp_path), pipeline=pipeline)
    config.classes = (3, 1)
    config.train_examples_per_class = 2
    spec = load_dataset(config)
    assert spec.num_classes == 2
    # The first two 3s and 1s of train, in their order; 3 -> 0 and 1 -> 1.
    assert _split(spec, "train") == ([1, 3, 5, 7], [1, 0, 1, 0])
    assert _split(spec, "test") == ([1, 3, 5, 7], [1, 0, 1, 0])  # Not limited.
    assert _split(spec, "validation") == ([100, 101], [0, 1])
    config.classes = ()
    config.train_examples_per_class = 1  # Every class, one example each.
    spec = load_dataset(config)
    assert spec.num_classes == 4 and _split(spec, "train") == ([0, 1, 2, 3], [0, 1, 2, 3])


def test_subset_of_digits_streams_and_decodes_alike(digits_dir):
    subsets = []
    for pipeline in ("memory", "stream"):
        config = data_config("digits", digits_dir, pipeline=pipeline)
        config.classes, config.train_examples_per_class = (9, 5, 7), 4
        spec = load_dataset(config)
        subsets.append({name: _split_arrays(spec, name) for name in spec.splits})
    for name in subsets[0]:
        np.testing.assert_array_equal(subsets[0][name][0], subsets[1][name][0])
        np.testing.assert_array_equal(subsets[0][name][1], subsets[1][name][1])
    labels = subsets[0]["train"][1]
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert set(subsets[0]["test"][1].tolist()) == {0, 1, 2}


def _split_arrays(spec, name):
    examples = [spec.preprocess(spec.splits[name][i]) for i in range(len(spec.splits[name]))]
    return np.stack([e["input"] for e in examples]), np.array([e["label"] for e in examples])


@pytest.mark.parametrize(
    ("classes", "per_class", "match"),
    [
        ((1, 4), 0, r"data.classes=\(1, 4\): dataset .* has no label 4; its labels are 0..3"),
        ((-1, 2), 0, "has no label -1"),
        ((1, 2, 1), 0, "label 1 is listed twice"),
        ((2,), 0, "at least two labels"),
        ((1, True), 0, "True is not an integer label"),
        ("12", 0, "must be a tuple of labels"),
        ((), -1, r"data.train_examples_per_class=-1 must be an integer >= 0"),
        ((), 1.5, "data.train_examples_per_class=1.5"),
    ],
)
def test_subset_errors(tmp_path, classes, per_class, match):
    config = data_config(_labelled_npz(tmp_path))
    config.classes, config.train_examples_per_class = classes, per_class
    with pytest.raises(UserInputError, match=match):
        load_dataset(config)
