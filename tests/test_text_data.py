"""The sequence datasets through the real loaders: declared features, token ids, vocabulary."""

import numpy as np
import pytest

from jaxdl.data import load_dataset
from jaxdl.data.spec import example_batch
from tests.data_helpers import data_config
from tests.text_helpers import SMALL_SPLITS


def _load(name: str, data_dir: str, pipeline: str = "auto"):
    return load_dataset(data_config(name, data_dir, pipeline=pipeline))


@pytest.mark.parametrize("pipeline", ["stream", "memory"])
def test_stdlib_chars_gives_next_byte_targets(sequence_data_dir, pipeline):
    spec = _load("stdlib_chars", sequence_data_dir, pipeline)
    assert (spec.vocab_size, spec.num_classes) == (256, 256)
    assert {key: (f.shape, f.dtype) for key, f in spec.features.items()} == {
        "input": ((256,), "int32"),
        "target": ((256,), "int32"),
    }
    example = spec.preprocess(spec.splits["train"][0])
    assert example["input"].dtype == np.int32
    np.testing.assert_array_equal(example["input"][1:], example["target"][:-1])
    # The first record starts at the first module's document marker.
    assert example["input"][0] == 0 and bytes(example["target"][:6].astype(np.uint8)) == b"import"
    test = spec.preprocess(spec.splits["test"][0])
    assert bytes(test["target"][:14].astype(np.uint8)) == b"# calendar.py\n"


def test_brackets_are_token_classification_with_lengths(sequence_data_dir):
    spec = _load("algorithmic/brackets", sequence_data_dir)
    assert (spec.vocab_size, spec.num_classes) == (256, 2)
    assert [len(spec.splits[s]) for s in ("train", "validation", "test")] == list(
        SMALL_SPLITS.values()
    )
    example = spec.preprocess(spec.splits["test"][3])
    length = int(example["length"])
    assert set(bytes(example["input"][:length].astype(np.uint8))) <= set(b"()[]")
    assert not example["input"][length:].any()  # 0 pads.
    assert example["label"] in (0, 1)
    batch = example_batch(spec, 4)
    assert batch["input"].shape == (4, 40) and batch["length"].shape == (4,)


def test_reverse_pairs_source_and_target(sequence_data_dir):
    spec = _load("algorithmic/reverse", sequence_data_dir)
    assert set(spec.features) == {"source", "source_length", "target", "target_length"}
    example = spec.preprocess(spec.splits["train"][0])
    length = int(example["source_length"])
    assert int(example["target_length"]) == length
    np.testing.assert_array_equal(example["target"][:length], example["source"][:length][::-1])
