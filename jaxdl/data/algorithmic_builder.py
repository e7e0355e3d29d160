"""Seeded algorithmic sequence tasks as a TFDS builder: offline data for the sequence families.

One builder config per task; every example is ASCII text stored as zero-padded uint8 arrays with
its length (0 never occurs in the text):

  copy, reverse, sort   source: 10-20 lowercase letters; target: the same, reversed, or sorted.
  addition              source: 'a+b' with 5-digit a and b (leading zeros kept); target: a + b
                        as 6 digits.
  brackets              source: 2-40 characters of '()[]'; label 1 when balanced and properly
                        nested. Half of the examples are balanced; the others are balanced
                        strings with one character changed, so the classes differ only in
                        nesting, not in length or bracket counts' parity.

Splits are drawn from fixed seeds, one per split, so every build gives the same examples.
Importing this module registers the builder with TFDS under BUILDER_NAME.
"""

import pathlib
import string
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

BUILDER_NAME = "algorithmic_tasks"
SPLIT_SIZES = {"train": 50_000, "validation": 1_000, "test": 1_000}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
MAX_LENGTH = 40  # Of any source or target.
LETTERS = np.frombuffer(string.ascii_lowercase.encode(), np.uint8)
BRACKETS = b"()[]"


def _letters(rng: np.random.Generator) -> bytes:
    return LETTERS[rng.integers(0, 26, rng.integers(10, 21))].tobytes()


def copy_example(rng: np.random.Generator) -> tuple[bytes, bytes, int]:
    text = _letters(rng)
    return text, text, 0


def reverse_example(rng: np.random.Generator) -> tuple[bytes, bytes, int]:
    text = _letters(rng)
    return text, text[::-1], 0


def sort_example(rng: np.random.Generator) -> tuple[bytes, bytes, int]:
    text = _letters(rng)
    return text, bytes(sorted(text)), 0


def addition_example(rng: np.random.Generator) -> tuple[bytes, bytes, int]:
    a, b = (int(x) for x in rng.integers(0, 100_000, 2))
    return f"{a:05d}+{b:05d}".encode(), f"{a + b:06d}".encode(), 0


def is_balanced(text: bytes) -> bool:
    stack = []
    for char in text:
        if char in b"([":
            stack.append(char)
        elif not stack or stack.pop() != {ord(")"): ord("("), ord("]"): ord("[")}[char]:
            return False
    return not stack


def _balanced(rng: np.random.Generator, pairs: int) -> bytes:
    if pairs == 0:
        return b""
    inside = int(rng.integers(0, pairs))
    opening, closing = (b"()", b"[]")[int(rng.integers(0, 2))]
    return (
        bytes([opening])
        + _balanced(rng, inside)
        + bytes([closing])
        + _balanced(rng, pairs - 1 - inside)
    )


def brackets_example(rng: np.random.Generator) -> tuple[bytes, bytes, int]:
    text = _balanced(rng, int(rng.integers(1, MAX_LENGTH // 2 + 1)))
    if rng.random() < 0.5:
        return text, b"", 1
    while True:  # One character changed, until the string is no longer balanced.
        position = int(rng.integers(0, len(text)))
        changed = text[:position] + bytes([BRACKETS[rng.integers(0, 4)]]) + text[position + 1 :]
        if not is_balanced(changed):
            return changed, b"", 0


TASKS: dict[str, Callable[[np.random.Generator], tuple[bytes, bytes, int]]] = {
    "copy": copy_example,
    "reverse": reverse_example,
    "sort": sort_example,
    "addition": addition_example,
    "brackets": brackets_example,
}


def padded(text: bytes) -> np.ndarray:
    out = np.zeros(MAX_LENGTH, np.uint8)
    out[: len(text)] = np.frombuffer(text, np.uint8)
    return out


class AlgorithmicTasks(tfds.core.GeneratorBasedBuilder):
    """Algorithmic sequence tasks; the config name is the task."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=name) for name in TASKS
    ]
    code_path = pathlib.Path(__file__)  # See digits_builder.py.

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Seeded algorithmic task {self.builder_config.name!r} (see the module).",
            features=tfds.features.FeaturesDict(
                {
                    "source": tfds.features.Tensor(shape=(MAX_LENGTH,), dtype=np.uint8),
                    "source_length": tfds.features.Scalar(dtype=np.int32),
                    "target": tfds.features.Tensor(shape=(MAX_LENGTH,), dtype=np.uint8),
                    "target_length": tfds.features.Scalar(dtype=np.int32),
                    "label": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Generated.
        return {split: self._generate_examples(split) for split in SPLIT_SIZES}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        make = TASKS[self.builder_config.name]
        rng = np.random.default_rng(SPLIT_SEEDS[split])
        for index in range(SPLIT_SIZES[split]):
            source, target, label = make(rng)
            yield (
                index,
                {
                    "source": padded(source),
                    "source_length": len(source),
                    "target": padded(target),
                    "target_length": len(target),
                    "label": label,
                },
            )
