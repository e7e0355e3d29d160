"""Text datasets of the TFDS catalog, for machines that have them prepared (never downloaded).

Tokens are UTF-8 bytes, as for the offline stdlib corpus, so every model, `jaxdl sample` and the
byte tokenizer work on them unchanged; longer texts are cut at the lengths below.

  tiny_shakespeare       LM: each split's text joined, cut into windows of 256 + 1 bytes.
  lm1b                   LM: one sentence per example, NUL (the start marker) then its bytes,
                         padded, with `target_mask` so padding never counts.
  imdb_reviews           classification: a review's first 1024 bytes, its length, the label.
  wmt14_translate/de-en  sequence to sequence: German source, English target, 128 bytes each.

Splits a dataset lacks (validation for lm1b and imdb_reviews) are carved from the end of train
with data.validation_fraction.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdl.data.spec import DatasetSpec, Feature, RecordSource, split_off_validation
from jaxdl.data.text_sources import BYTE_VOCAB, NextBytes, SequenceClass, SequencePair
from jaxdl.data.tfds_sources import checked_data_dir, open_prepared

LM_CONTEXT = 256
REVIEW_LENGTH = 1024
TRANSLATION_LENGTH = 128
WMT14_DE_EN = "wmt14_translate/de-en"
TFDS_TEXT_DATASETS = ("tiny_shakespeare", "lm1b", "imdb_reviews", WMT14_DE_EN)


def utf8(text: Any) -> bytes:
    """A TFDS Text feature as bytes (data_source gives bytes; mock data may give str)."""
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def clipped_ids(text: Any, length: int) -> tuple[np.ndarray, int]:
    """(length,) int32 byte ids of `text`, zero-padded or cut, and how many are real."""
    data = np.frombuffer(utf8(text)[:length], np.uint8)
    ids = np.zeros(length, np.int32)
    ids[: len(data)] = data
    return ids, len(data)


@dataclasses.dataclass(frozen=True)
class TextWindows:
    """A split's texts joined (NUL before each) and cut into records {'bytes': (context + 1,)}."""

    windows: np.ndarray

    @classmethod
    def from_source(cls, source: RecordSource, key: str, context: int) -> "TextWindows":
        joined = b"".join(b"\x00" + utf8(source[i][key]) for i in range(len(source)))
        count = len(joined) // (context + 1)
        data = np.frombuffer(joined[: count * (context + 1)], np.uint8)
        return cls(data.reshape(count, context + 1))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"bytes": self.windows[index]}


@dataclasses.dataclass(frozen=True)
class SentenceNextBytes:
    """A sentence -> NUL + its bytes as input, the bytes as next-byte targets, and the mask."""

    key: str
    context: int

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        ids, length = clipped_ids(b"\x00" + utf8(record[self.key]), self.context + 1)
        mask = (np.arange(self.context) < length - 1).astype(np.float32)
        return {"input": ids[:-1], "target": ids[1:], "target_mask": mask}


@dataclasses.dataclass(frozen=True)
class TextClass:
    """A labelled text -> SequenceClass's example of its first `length` bytes."""

    length: int

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        ids, length = clipped_ids(record["text"], self.length)
        return SequenceClass()({"source": ids, "source_length": length, "label": record["label"]})


@dataclasses.dataclass(frozen=True)
class Translation:
    """A translation pair -> SequencePair's example, source and target cut to `length` bytes."""

    source: str
    target: str
    length: int

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        source, source_length = clipped_ids(record[self.source], self.length)
        target, target_length = clipped_ids(record[self.target], self.length)
        return SequencePair()(
            {
                "source": source,
                "source_length": source_length,
                "target": target,
                "target_length": target_length,
            }
        )


def load_tfds_text(
    name: str, *, data_dir: str, validation_fraction: float, input_kind: str
) -> DatasetSpec:
    """One of TFDS_TEXT_DATASETS from an already prepared data_dir."""
    del input_kind  # The inputs are always byte ids.
    if name == WMT14_DE_EN:
        import tensorflow_datasets.translate.wmt14  # noqa: F401  (registers the builder)
    data_dir = checked_data_dir(data_dir, name, creates=False)
    has_validation = name in ("tiny_shakespeare", WMT14_DE_EN)
    wanted = ("train", "validation", "test") if has_validation else ("train", "test")
    splits = dict(open_prepared(name, wanted, data_dir))
    if not has_validation:
        what = f"dataset {name!r}"
        splits["train"], splits["validation"] = split_off_validation(
            splits["train"], validation_fraction, what=what
        )
    sequence = Feature((LM_CONTEXT,), "int32")
    if name == "tiny_shakespeare":
        splits = {
            key: TextWindows.from_source(src, "text", LM_CONTEXT) for key, src in splits.items()
        }
        return _spec(name, splits, NextBytes(), {"input": sequence, "target": sequence}, BYTE_VOCAB)
    if name == "lm1b":
        features = {
            "input": sequence,
            "target": sequence,
            "target_mask": Feature((LM_CONTEXT,), "float32"),
        }
        return _spec(name, splits, SentenceNextBytes("text", LM_CONTEXT), features, BYTE_VOCAB)
    scalar = Feature((), "int32")
    if name == "imdb_reviews":
        features = {"input": Feature((REVIEW_LENGTH,), "int32"), "length": scalar, "label": scalar}
        return _spec(name, splits, TextClass(REVIEW_LENGTH), features, num_classes=2)
    pair = Feature((TRANSLATION_LENGTH,), "int32")
    features = {"source": pair, "source_length": scalar, "target": pair, "target_length": scalar}
    preprocess = Translation("de", "en", TRANSLATION_LENGTH)
    return _spec(name, splits, preprocess, features, BYTE_VOCAB)


def _spec(
    name: str,
    splits: Mapping[str, RecordSource],
    preprocess: Any,
    features: Mapping[str, Feature],
    num_classes: int,
) -> DatasetSpec:
    first = next(iter(features.values()))
    return DatasetSpec(
        name=name,
        splits=splits,
        preprocess=preprocess,
        input_shape=first.shape,
        num_classes=num_classes,
        features=features,
        vocab_size=BYTE_VOCAB,
    )
