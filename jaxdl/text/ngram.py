"""A smoothed byte n-gram language model: the baseline a character LM must beat.

Interpolated Witten-Bell smoothing (Witten and Bell 1991; Chen and Goodman 1998, section 2.5):
with history h of length k, next byte c, count C(h, c), C(h) = sum over c of C(h, c) and T(h) the
number of distinct bytes seen after h,

    P_k(c | h) = (C(h, c) + T(h) * P_{k-1}(c | h')) / (C(h) + T(h)),    h' = h without its oldest byte,

falling back to P_{k-1} for a history never seen, down to add-one unigrams over all 256 bytes.
Counting is vectorised with numpy: an n-gram of up to 8 bytes is one uint64 key, and lookups are
binary searches in the sorted unique keys.
"""

import dataclasses

import numpy as np

VOCAB = 256


def _keys(data: np.ndarray, length: int) -> np.ndarray:
    """The uint64 key of every window of `length` bytes, oldest byte most significant."""
    windows = len(data) - length + 1
    keys = np.zeros(max(windows, 0), np.uint64)
    for offset in range(length):
        keys = (keys << np.uint64(8)) | data[offset : offset + windows].astype(np.uint64)
    return keys


@dataclasses.dataclass(frozen=True)
class _Table:
    """Sorted unique keys with a value each, and a vectorised lookup (0 where absent)."""

    keys: np.ndarray
    values: np.ndarray

    @classmethod
    def counts(cls, keys: np.ndarray) -> "_Table":
        unique, counts = np.unique(keys, return_counts=True)
        return cls(unique, counts.astype(np.float64))

    def __getitem__(self, query: np.ndarray) -> np.ndarray:
        index = np.minimum(np.searchsorted(self.keys, query), max(len(self.keys) - 1, 0))
        found = (self.keys[index] == query) if len(self.keys) else np.zeros(len(query), bool)
        return np.where(found, self.values[index] if len(self.keys) else 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class NGramModel:
    """Counts of an `order`-gram byte model; fit with `NGramModel.fit`."""

    order: int
    unigram: np.ndarray  # (256,) add-one probabilities.
    grams: tuple[_Table, ...]  # grams[k - 1]: counts of (history of k bytes, next byte).
    totals: tuple[_Table, ...]  # totals[k - 1]: C(h) per history of k bytes.
    types: tuple[_Table, ...]  # types[k - 1]: T(h) per history of k bytes.

    @classmethod
    def fit(cls, data: np.ndarray, order: int = 5) -> "NGramModel":
        """Counts every n-gram of `data` (uint8 bytes) up to `order` bytes (history order - 1)."""
        if not 1 <= order <= 8:
            raise ValueError(f"order must be 1..8 (one uint64 key), got {order}")
        data = np.asarray(data, np.uint8)
        unigram = (np.bincount(data, minlength=VOCAB) + 1.0) / (len(data) + VOCAB)
        grams, totals, types = [], [], []
        for history in range(1, order):
            table = _Table.counts(_keys(data, history + 1))
            contexts = table.keys >> np.uint64(8)
            # Keys are sorted, so the grams of one history are contiguous.
            starts = np.flatnonzero(np.r_[True, contexts[1:] != contexts[:-1]])
            unique = contexts[starts]
            grams.append(table)
            totals.append(_Table(unique, np.add.reduceat(table.values, starts)))
            types.append(_Table(unique, np.diff(np.r_[starts, len(contexts)]).astype(np.float64)))
        return cls(order, unigram, tuple(grams), tuple(totals), tuple(types))

    def probabilities(self, data: np.ndarray) -> np.ndarray:
        """P(data[t] | the order - 1 bytes before it) for t = order - 1 .. len(data) - 1."""
        data = np.asarray(data, np.uint8)
        start = self.order - 1
        targets = data[start:]
        prob = self.unigram[targets]
        for history in range(1, self.order):
            gram = _keys(data[start - history :], history + 1)
            context = gram >> np.uint64(8)
            total = self.totals[history - 1][context]
            distinct = self.types[history - 1][context]
            count = self.grams[history - 1][gram]
            seen = total > 0
            denominator = np.where(seen, total + distinct, 1.0)
            prob = np.where(seen, (count + distinct * prob) / denominator, prob)
        return prob

    def bits_per_byte(self, data: np.ndarray) -> float:
        """Mean -log2 P over every byte of `data` that has a full history."""
        return float(-np.mean(np.log2(self.probabilities(data))))
