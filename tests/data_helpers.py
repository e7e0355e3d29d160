"""Small datasets and configs the data, pipeline and feed tests share."""

import numpy as np
from ml_collections import ConfigDict

from jaxdl.data import DatasetSpec
from jaxdl.data.npz_source import ArraySplit
from jaxdl.data.spec import ScaleToFloat


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


def take_labels(iterator, count: int) -> list[list[int]]:
    return [next(iterator)["label"].tolist() for _ in range(count)]
