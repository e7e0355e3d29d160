"""Imbalanced data: long-tailed train splits, the train split's class counts, a balanced sampler.

`data.imbalance_ratio=r` (r > 1) keeps int(n_max * r^(-k / (C - 1))) train examples of class k
(at most all it has), the exponential profile of Cui et al. 2019, where n_max is the largest
class's count and k the label (after data.classes renumbers them). Which examples: the first
ones of each class, or a seeded choice with data.subset_seed >= 0 (subset.first_per_class). Only
the train split changes; validation and test stay as they are.

`data.sampler='balanced'` draws every train position of the stream (order.py) as a class chosen
uniformly, then an example of that class chosen uniformly. An epoch is still len(train) draws,
and draw p depends only on (seed, p), so the iterator state {'next_index': p} resumes exactly
and each process reads its own slice of every global batch, as with the uniform order.
"""

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdl import config_checks
from jaxdl.data.arrays import ExampleArrays
from jaxdl.data.spec import DatasetSpec
from jaxdl.data.subset import (
    IndexedSource,
    Relabel,
    first_per_class,
    record_labels,
    subset_seed,
)
from jaxdl.errors import UserInputError

SAMPLERS = config_checks.SAMPLERS
# Mixed into the Philox key so that the balanced draws are not the uniform order's bits.
_BALANCED_SALT = 0x9E3779B97F4A7C15


def has_class_labels(spec: DatasetSpec) -> bool:
    """Whether every example of `spec` has one integer class label (not per-step labels)."""
    label = (spec.features or {}).get("label")
    return spec.batching is None and label is not None and tuple(label.shape) == ()


def split_labels(spec: DatasetSpec, split: str = "train") -> np.ndarray:
    """The label of every example of `split`, as the model sees it (after data.classes)."""
    source = spec.splits[split]
    if isinstance(source, ExampleArrays):
        return np.asarray(source.arrays["label"], np.int64)
    labels = record_labels(source)
    if isinstance(spec.preprocess, Relabel):  # data.classes renumbers labels in preprocess.
        labels = np.asarray(spec.preprocess.table, np.int64)[labels]
    return labels


def class_counts(spec: DatasetSpec, what: str) -> np.ndarray:
    """(num_classes,) int64: the train split's examples of each class. `what` names the field
    that needs them, for the error on a dataset without class labels."""
    _require_class_labels(spec, what)
    return np.bincount(split_labels(spec), minlength=spec.num_classes).astype(np.int64)


def long_tail_counts(counts: np.ndarray, ratio: float) -> np.ndarray:
    """Examples class k keeps: min(n_k, int(n_max * ratio^(-k / (C - 1)))), at least 1."""
    num_classes = len(counts)
    profile = float(ratio) ** (-np.arange(num_classes) / max(num_classes - 1, 1))
    # The small epsilon keeps exact products (e.g. n_max / ratio) from flooring one below.
    target = np.floor(counts.max() * profile + 1e-9).astype(np.int64)
    return np.maximum(np.minimum(counts, target), np.minimum(counts, 1))


def apply_long_tail(spec: DatasetSpec, config: Mapping[str, Any]) -> DatasetSpec:
    """`spec` with a long-tailed train split as data.imbalance_ratio says (or `spec`)."""
    ratio = config.get("imbalance_ratio", 0.0)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not np.isfinite(ratio):
        ratio = -1
    if ratio != 0 and ratio < 1:
        raise UserInputError(
            f"data.imbalance_ratio={config.get('imbalance_ratio')!r} must be >= 1 (e.g. 50 for "
            "50:1), or 0 or 1 for no long tail."
        )
    if ratio <= 1:
        return spec
    _require_class_labels(spec, "data.imbalance_ratio")
    labels = split_labels(spec)
    keep = long_tail_counts(np.bincount(labels, minlength=spec.num_classes), ratio)
    rows = first_per_class(labels, keep, subset_seed(config))
    train = spec.splits["train"]
    if isinstance(train, IndexedSource):  # Index the records directly, not a view of a view.
        train = IndexedSource(train.source, train.indices[rows])
    else:
        train = IndexedSource(train, rows)
    return dataclasses.replace(spec, splits={**spec.splits, "train": train})


@dataclasses.dataclass(eq=False)
class BalancedEpochs:
    """(seed, epoch, size) -> the `size` train indices of that epoch, class-balanced.

    The drop-in for order.epoch_permutation. Pickles (Grain workers get it); the last few
    epochs are cached, as epoch_permutation's are, since every batch asks for its epoch.
    """

    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, np.int64)
        present = np.unique(self.labels)
        # Examples of each present class, grouped: class j's are members[starts[j]:starts[j+1]].
        order = np.argsort(self.labels, kind="stable")
        sizes = np.bincount(self.labels)[present]
        self._members = order
        self._starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._sizes = sizes
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, seed: int, epoch: int, size: int) -> np.ndarray:
        key = (seed, epoch, size)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        drawn = self._draw(seed, epoch, size)
        with self._lock:
            if len(self._cache) >= 4:
                self._cache.clear()
            self._cache[key] = drawn
        return drawn

    def _draw(self, seed: int, epoch: int, size: int) -> np.ndarray:
        key = np.array([seed % 2**64, (epoch ^ _BALANCED_SALT) % 2**64], np.uint64)
        bits = np.random.Philox(key=key).random_raw(2 * size)
        # Raw 64-bit draws modulo a small count: the bias is below 2^-50.
        classes = bits[:size] % np.uint64(len(self._sizes))
        within = bits[size:] % self._sizes[classes].astype(np.uint64)
        drawn = self._members[self._starts[classes] + within.astype(np.int64)]
        drawn.flags.writeable = False  # Cached and shared: nobody may change it.
        return drawn

    def __getstate__(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.labels = state["labels"]
        self.__post_init__()


def check_sampler(spec: DatasetSpec, sampler: str) -> None:
    """data.sampler is known and `spec` can serve it (without reading the labels)."""
    if sampler not in SAMPLERS:
        raise UserInputError(
            f"data.sampler={sampler!r} is not one of {', '.join(SAMPLERS)}; use 'balanced' to "
            "draw every class equally often."
        )
    if sampler == "balanced":
        _require_class_labels(spec, "data.sampler='balanced'")


def train_epochs(spec: DatasetSpec, sampler: str) -> BalancedEpochs | None:
    """What orders the train stream for data.sampler: None for 'uniform' (order.py's
    permutations), BalancedEpochs over the train labels for 'balanced'."""
    check_sampler(spec, sampler)
    return None if sampler == "uniform" else BalancedEpochs(split_labels(spec))


def _require_class_labels(spec: DatasetSpec, what: str) -> None:
    if not has_class_labels(spec):
        raise UserInputError(
            f"{what} needs a classification dataset (one integer label per example); dataset "
            f"{spec.name!r} has none. Remove it or use a classification dataset."
        )
