"""Label subsets, for transfer learning: some of a dataset's classes, and few examples of each.

`data.classes=(5, 6, 7, 8, 9)` keeps only those labels in every split and renumbers them
0..k-1 in the order given; `data.train_examples_per_class=N` keeps the first N examples of each
class of the train split, in the split's order (so the same ones whatever the seed), or with
`data.subset_seed=S` (S >= 0) N of each chosen by S. Both apply
to the raw records, before a dataset is decoded into memory or streamed, so they work for either
pipeline.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxdl.data.npz_source import ArraySplit
from jaxdl.data.spec import DatasetSpec, RecordSource, SourceSlice
from jaxdl.errors import UserInputError

# Records read at once when a source reads several in one call (TFDS data sources do).
_READ_CHUNK = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class IndexedSource:
    """The records source[indices[0]], source[indices[1]], ..., without copying them."""

    source: RecordSource
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.source[int(self.indices[index])]


@dataclasses.dataclass(frozen=True)
class Relabel:
    """A preprocess whose example's label goes through `table` (old label -> new label)."""

    preprocess: Any
    table: tuple[int, ...]

    def __call__(self, record: Any) -> dict[str, np.ndarray]:
        example = self.preprocess(record)
        return {**example, "label": np.int32(self.table[int(example["label"])])}


def record_labels(source: RecordSource) -> np.ndarray:
    """The label of every record of `source`, in order (int64)."""
    if isinstance(source, ArraySplit):
        return np.asarray(source.y, np.int64)
    if isinstance(source, SourceSlice):
        if isinstance(source.source, ArraySplit):
            return np.asarray(source.source.y[source.start : source.stop], np.int64)
        return _read_labels(source.source, range(source.start, source.stop))
    if isinstance(source, IndexedSource):
        return record_labels(source.source)[source.indices]
    return _read_labels(source, range(len(source)))


def _read_labels(source: RecordSource, rows: range) -> np.ndarray:
    labels = []
    read_many = getattr(source, "__getitems__", None)
    for start in range(rows.start, rows.stop, _READ_CHUNK):
        chunk = range(start, min(start + _READ_CHUNK, rows.stop))
        records = read_many(list(chunk)) if read_many else [source[row] for row in chunk]
        labels.extend(int(record["label"]) for record in records)
    return np.asarray(labels, np.int64)


def _check_classes(classes: Any, num_classes: int, name: str) -> tuple[int, ...]:
    field = f"data.classes={_shown(classes)}"
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise UserInputError(f"{field} must be a tuple of labels, e.g. (5, 6, 7, 8, 9).")
    for label in classes:
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise UserInputError(f"{field}: {label!r} is not an integer label.")
        if not 0 <= label < num_classes:
            raise UserInputError(
                f"{field}: dataset {name!r} has no label {label}; its labels are "
                f"0..{num_classes - 1}."
            )
    seen = set()
    for label in classes:
        if label in seen:
            raise UserInputError(f"{field}: label {label} is listed twice; list each once.")
        seen.add(label)
    if len(classes) < 2:
        raise UserInputError(f"{field}: a classifier needs at least two labels; list more.")
    return tuple(int(label) for label in classes)


def _check_per_class(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise UserInputError(
            f"data.train_examples_per_class={value!r} must be an integer >= 0 (0 keeps all)."
        )
    return int(value)


def subset_seed(config: Mapping[str, Any]) -> int:
    """data.subset_seed, checked: -1 (the first examples) or a seed >= 0."""
    seed = config.get("subset_seed", -1)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < -1:
        raise UserInputError(
            f"data.subset_seed={seed!r} must be an integer >= 0, or -1 for the first examples."
        )
    return int(seed)


def _shown(value: Any) -> str:
    return repr(tuple(value)) if isinstance(value, list | tuple) else repr(value)


def first_per_class(labels: np.ndarray, limit: int | np.ndarray, seed: int = -1) -> np.ndarray:
    """Positions of `limit` examples of each label (`limit[label]` when it is an array of
    per-class counts), in their original order: the first ones, or for a seed >= 0
    (data.subset_seed) a seeded choice (pick_examples)."""
    keep = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        count = int(limit[label]) if isinstance(limit, np.ndarray) else limit
        keep[pick_examples(np.flatnonzero(labels == label), count, seed, int(label))] = True
    return np.flatnonzero(keep)


def pick_examples(positions: np.ndarray, limit: int, seed: int, label: int) -> np.ndarray:
    """`limit` of `positions`: the first ones for seed -1, else a choice fixed by (seed, label).

    Like order.py, an argsort of raw Philox bits: NumPy keeps those stable across versions.
    """
    if seed < 0 or limit >= len(positions):
        return positions[:limit]
    bits = np.random.Philox(key=np.array([seed, label], np.uint64)).random_raw(len(positions))
    return np.sort(positions[np.argsort(bits, kind="stable")[:limit]])


def apply_subset(spec: DatasetSpec, config: Mapping[str, Any]) -> DatasetSpec:
    """`spec` restricted as data.classes and data.train_examples_per_class say (or `spec`)."""
    classes = config.get("classes", ()) or ()
    per_class = _check_per_class(config.get("train_examples_per_class", 0))
    if not classes and not per_class:
        return spec
    kept = _check_classes(classes, spec.num_classes, spec.name) if classes else None
    splits, preprocess, num_classes = {}, spec.preprocess, spec.num_classes
    if kept is not None:
        table = [-1] * spec.num_classes
        for new, old in enumerate(kept):
            table[old] = new
        preprocess, num_classes = Relabel(spec.preprocess, tuple(table)), len(kept)
    for split, source in spec.splits.items():
        labels = record_labels(source)
        rows = np.arange(len(labels))
        if kept is not None:
            rows = np.flatnonzero(np.isin(labels, kept))
        if split == "train" and per_class:
            rows = rows[first_per_class(labels[rows], per_class, subset_seed(config))]
        if len(rows) == 0:
            raise UserInputError(
                f"data.classes={_shown(classes)} leaves no example in the {split} split of "
                f"dataset {spec.name!r}; choose labels that occur in every split."
            )
        splits[split] = source if len(rows) == len(labels) else IndexedSource(source, rows)
    return dataclasses.replace(spec, splits=splits, preprocess=preprocess, num_classes=num_classes)
