"""What every dataset loader returns, and the small pieces the loaders share.

Everything here must pickle: Grain worker processes receive the splits and the preprocess
function by pickling, so sources and preprocessors are top-level classes, never lambdas.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from jaxdl.errors import UserInputError

SPLIT_NAMES = ("train", "validation", "test")
INPUT_KINDS = ("auto", "vector", "signal", "image")


class RecordSource(Protocol):
    """Random access to raw records: what Grain's MapDataset.source accepts."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Feature:
    """One key of a dataset's examples: its shape (per example) and numpy dtype name."""

    shape: tuple[int, ...]
    dtype: str


def classification_features(input_shape: tuple[int, ...]) -> dict[str, Feature]:
    """The examples of a classification dataset: a float32 input and an int32 label."""
    return {"input": Feature(tuple(input_shape), "float32"), "label": Feature((), "int32")}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset ready for the pipeline: raw splits plus how to turn one record into an example.

    `features` declares what `preprocess` returns, key by key (token ids, lengths, targets ...);
    the engine builds the example batch that shapes a task's state from it, and the pipeline its
    padding. Left out, it is the classification pair, from `input_shape`.

    `num_classes` is the size of the outputs a model predicts from (classes, or a language
    model's next-token vocabulary); `vocab_size` is the number of token ids the inputs use,
    0 when they are real numbers rather than tokens.
    """

    name: str
    splits: Mapping[str, RecordSource]
    preprocess: Callable[[Any], dict[str, np.ndarray]]
    input_shape: tuple[int, ...]
    num_classes: int
    features: Mapping[str, Feature] | None = None
    vocab_size: int = 0
    # How examples become batches; None stacks rows. A graph dataset's is a GraphBatching
    # (graph_pipeline.py): its batches are packs of graphs, not rows of examples.
    batching: Any = None
    # (low, high): every input value lies in it (images: pixels scaled to [0, 1]); None when the
    # data does not say. Adversarial attacks clip to it and measure eps in its units.
    input_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if tuple(sorted(self.splits)) != tuple(sorted(SPLIT_NAMES)):
            raise ValueError(f"splits must be exactly {SPLIT_NAMES}, got {tuple(self.splits)}")
        if self.features is None and self.batching is not None:
            object.__setattr__(self, "features", self.batching.item_features())
        if self.features is None:
            object.__setattr__(self, "features", classification_features(self.input_shape))


def example_batch(spec: DatasetSpec, rows: int) -> dict[str, np.ndarray]:
    """Zeros of `rows` examples with every declared key, shape and dtype (for a dataset with
    its own batching, its all-padding batch of `rows` examples)."""
    if spec.batching is not None:
        return spec.batching.example_batch(rows)
    return {
        key: np.zeros((rows, *feature.shape), feature.dtype)
        for key, feature in spec.features.items()
    }


def batch_nbytes(spec: DatasetSpec, rows: int) -> int:
    """Bytes of one batch of `rows` examples, from the declaration (no arrays are made, except
    a dataset with its own batching builds its all-padding batch)."""
    if spec.batching is not None:
        return sum(value.nbytes for value in spec.batching.example_batch(rows).values())
    return rows * sum(
        math.prod(feature.shape) * np.dtype(feature.dtype).itemsize
        for feature in spec.features.values()
    )


@dataclasses.dataclass(frozen=True)
class ScaleToFloat:
    """Raw record {input_key: numeric array, 'label': int} -> {'input': float32, 'label': int32}."""

    input_key: str
    input_shape: tuple[int, ...]
    divisor: float = 1.0

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        x = np.asarray(record[self.input_key], dtype=np.float32)
        if self.divisor != 1.0:
            x = x / np.float32(self.divisor)
        return {"input": x.reshape(self.input_shape), "label": np.int32(record["label"])}


@dataclasses.dataclass(frozen=True)
class SourceSlice:
    """The records source[start:stop], without copying them."""

    source: RecordSource
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        return self.source[self.start + index]


def split_off_validation(
    source: RecordSource, fraction: float, *, what: str
) -> tuple[SourceSlice, SourceSlice]:
    """(train, validation): validation is the last `fraction` of `source`, so it never varies."""
    if not isinstance(fraction, int | float) or not 0.0 < fraction < 1.0:
        raise UserInputError(
            f"data.validation_fraction must be a number strictly between 0 and 1 to carve a "
            f"validation split from {what}, got {fraction!r}. Set it to e.g. 0.1."
        )
    total = len(source)
    num_validation = round(total * fraction)
    if not 0 < num_validation < total:
        raise UserInputError(
            f"data.validation_fraction={fraction} leaves an empty train or validation split for "
            f"{what}, which has {total} training examples. Choose a fraction that keeps both "
            "non-empty."
        )
    cut = total - num_validation
    return SourceSlice(source, 0, cut), SourceSlice(source, cut, total)


def resolve_input_shape(
    example_shape: tuple[int, ...], input_kind: str, *, what: str
) -> tuple[int, ...]:
    """The model input shape for examples of `example_shape` under data.input_kind."""
    if input_kind not in INPUT_KINDS:
        raise UserInputError(
            f"data.input_kind={input_kind!r} is not one of {', '.join(INPUT_KINDS)}. "
            "Use 'auto' to infer it from the example shape."
        )
    rank = len(example_shape)
    if rank == 0:
        raise UserInputError(
            f"{what} has scalar examples; inputs need shape (num_examples, features...)."
        )
    if input_kind == "vector":
        return (math.prod(example_shape),)
    if input_kind == "signal" and rank in (1, 2):
        return example_shape if rank == 2 else (*example_shape, 1)
    if input_kind == "auto" and rank == 1:
        return example_shape
    if input_kind in ("auto", "image") and rank in (2, 3):
        return example_shape if rank == 3 else (*example_shape, 1)
    expected = {
        "auto": "rank 1 (vector), 2 (h, w) or 3 (h, w, c)",
        "signal": "rank 1 (length,) or 2 (length, channels)",
        "image": "rank 2 (h, w) or 3 (h, w, c)",
    }[input_kind]
    raise UserInputError(
        f"{what} has examples of shape {example_shape}, but data.input_kind={input_kind!r} "
        f"needs {expected}. Set data.input_kind to match the data ('vector' flattens any shape)."
    )
