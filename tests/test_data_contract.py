"""The data contract: a dataset declares the keys, shapes and dtypes of its examples.

Classification datasets keep `{"input": float32, "label": int32}`; a dataset with other keys
(here token ids with a length, as sequence datasets will have) flows through both pipelines,
the eval padding and the example batch that shapes a task's state.
"""

import dataclasses

import numpy as np
import pytest

from jaxdl.data import DatasetSpec, Feature, eval_batches, example_batch, train_iterator
from jaxdl.data.arrays import decoded_bytes, in_memory
from jaxdl.engine.setup import _example_batch
from tests.data_helpers import index_spec

LENGTH = 6
FEATURES = {
    "input": Feature((LENGTH,), "int32"),
    "length": Feature((), "int32"),
    "label": Feature((), "int32"),
}


@dataclasses.dataclass(frozen=True)
class TokenRecords:
    """Record i: the tokens 1..(i % LENGTH + 1), label i % 2."""

    size: int

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {"tokens": list(range(1, index % LENGTH + 2)), "label": index % 2}


@dataclasses.dataclass(frozen=True)
class PadTokens:
    def __call__(self, record: dict) -> dict[str, np.ndarray]:
        tokens = np.zeros(LENGTH, np.int32)
        tokens[: len(record["tokens"])] = record["tokens"]
        return {
            "input": tokens,
            "length": np.int32(len(record["tokens"])),
            "label": np.int32(record["label"]),
        }


def token_spec(size: int = 10) -> DatasetSpec:
    splits = {name: TokenRecords(size) for name in ("train", "validation", "test")}
    return DatasetSpec("tokens", splits, PadTokens(), (LENGTH,), 2, features=FEATURES)


def _structure(batch: dict) -> dict:
    return {key: (value.shape[1:], value.dtype.name) for key, value in batch.items()}


def test_classification_datasets_declare_the_input_label_pair():
    spec = index_spec(8)
    assert spec.features == {"input": Feature((1,), "float32"), "label": Feature((), "int32")}
    batch = _example_batch(spec)
    assert _structure(batch) == {"input": ((1,), "float32"), "label": ((), "int32")}
    assert batch["input"].shape[0] == 1


def test_example_batch_follows_the_declaration():
    batch = example_batch(token_spec(), 3)
    assert _structure(batch) == {key: (f.shape, f.dtype) for key, f in FEATURES.items()}
    assert all(value.shape[0] == 3 and not value.any() for value in batch.values())
    assert _structure(_example_batch(token_spec())) == _structure(batch)


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_declared_keys_flow_through_train_and_eval(pipeline):
    spec = in_memory(token_spec(), pipeline)
    expected = {key: (f.shape, f.dtype) for key, f in FEATURES.items()}
    iterator = train_iterator(spec, batch_size=4, seed=0)
    batch = next(iterator)
    iterator.close()
    assert _structure(batch) == expected
    np.testing.assert_array_equal((batch["input"] > 0).sum(1), batch["length"])
    batches = list(eval_batches(spec, "test", batch_size=4))
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]
    for b in batches:
        assert _structure({k: v for k, v in b.items() if k != "mask"}) == expected
    # Four processes over 10 examples in batches of 4: process 3's one batch is all padding, so
    # its shapes and dtypes come from the declaration alone.
    (padding,) = eval_batches(spec, "test", batch_size=4, shard_index=3, shard_count=4)
    assert padding["mask"].sum() == 0
    assert _structure({k: v for k, v in padding.items() if k != "mask"}) == expected


def test_decoded_size_counts_every_declared_key():
    assert decoded_bytes(token_spec(10)) == 3 * 10 * 4 * (LENGTH + 2)
    assert decoded_bytes(index_spec(5)) == 3 * 5 * 4 * 2
