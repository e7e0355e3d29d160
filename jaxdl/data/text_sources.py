"""Sequence datasets built on this machine: the stdlib character corpus and algorithmic tasks.

Both are TFDS builders in this package, prepared into data.data_dir on first use (no network),
then read with tfds.data_source like every other dataset. Token ids are the raw bytes: the texts
are ASCII or UTF-8, and 0 (NUL) never occurs in them, so 0 pads.

  stdlib_chars           {'input': (256,) int32, 'target': (256,) int32}: next-byte targets.
  algorithmic/brackets   {'input': (40,) int32, 'length': int32, 'label': int32}: classification.
  algorithmic/copy, reverse, sort, addition
                         {'source', 'target': (40,) int32, 'source_length', 'target_length'}.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdl.data import algorithmic_builder, stdlib_chars_builder
from jaxdl.data.spec import SPLIT_NAMES, DatasetSpec, Feature
from jaxdl.data.tfds_sources import open_prepared, prepare_builder

BYTE_VOCAB = 256
STDLIB_CHARS = stdlib_chars_builder.BUILDER_NAME
ALGORITHMIC_PREFIX = "algorithmic/"
ALGORITHMIC_NAMES = tuple(ALGORITHMIC_PREFIX + task for task in algorithmic_builder.TASKS)
CLASSIFIED_TASKS = ("brackets",)  # The others map a source sequence to a target sequence.


@dataclasses.dataclass(frozen=True)
class NextBytes:
    """A record of CONTEXT + 1 bytes -> the first CONTEXT as input, the last CONTEXT as targets."""

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        ids = np.asarray(record["bytes"], np.int32)
        return {"input": ids[:-1], "target": ids[1:]}


@dataclasses.dataclass(frozen=True)
class SequenceClass:
    """An algorithmic record -> token ids with their length and the class label."""

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {
            "input": np.asarray(record["source"], np.int32),
            "length": np.int32(record["source_length"]),
            "label": np.int32(record["label"]),
        }


@dataclasses.dataclass(frozen=True)
class SequencePair:
    """An algorithmic record -> source and target token ids with their lengths."""

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {
            key: np.asarray(record[key], np.int32)
            for key in ("source", "source_length", "target", "target_length")
        }


def load_stdlib_chars(*, data_dir: str, validation_fraction: float, input_kind: str) -> DatasetSpec:
    """The Python standard library's source as 256-byte windows with next-byte targets."""
    del validation_fraction, input_kind  # Fixed held-out modules; the inputs are always tokens.
    data_dir = prepare_builder(stdlib_chars_builder.StdlibChars, STDLIB_CHARS, data_dir)
    splits = open_prepared(STDLIB_CHARS, SPLIT_NAMES, data_dir)
    context = stdlib_chars_builder.CONTEXT
    return DatasetSpec(
        name=STDLIB_CHARS,
        splits=splits,
        preprocess=NextBytes(),
        input_shape=(context,),
        num_classes=BYTE_VOCAB,
        features={"input": Feature((context,), "int32"), "target": Feature((context,), "int32")},
        vocab_size=BYTE_VOCAB,
    )


def load_algorithmic(
    name: str, *, data_dir: str, validation_fraction: float, input_kind: str
) -> DatasetSpec:
    """One algorithmic task, `name` = 'algorithmic/TASK'."""
    del validation_fraction, input_kind  # Fixed seeded splits; the inputs are always tokens.
    task = name.removeprefix(ALGORITHMIC_PREFIX)
    data_dir = prepare_builder(algorithmic_builder.AlgorithmicTasks, name, data_dir, config=task)
    tfds_name = f"{algorithmic_builder.BUILDER_NAME}/{task}"
    splits = open_prepared(tfds_name, SPLIT_NAMES, data_dir)
    length = algorithmic_builder.MAX_LENGTH
    sequence, scalar = Feature((length,), "int32"), Feature((), "int32")
    if task in CLASSIFIED_TASKS:
        preprocess: Any = SequenceClass()
        features = {"input": sequence, "length": scalar, "label": scalar}
        num_classes = 2
    else:
        preprocess = SequencePair()
        features = {
            "source": sequence,
            "source_length": scalar,
            "target": sequence,
            "target_length": scalar,
        }
        num_classes = BYTE_VOCAB
    return DatasetSpec(
        name=name,
        splits=splits,
        preprocess=preprocess,
        input_shape=(length,),
        num_classes=num_classes,
        features=features,
        vocab_size=BYTE_VOCAB,
    )
