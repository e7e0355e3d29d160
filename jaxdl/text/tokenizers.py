"""Built-in tokenisers: byte level (any text, no vocabulary to fit) and character level.

Both map text to int32 ids and back and reserve ids for padding, beginning and end of
sequence. Subword (BPE) tokenisers come from the `tokenizers` library (text/subword.py).
"""

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SPECIALS = ("<pad>", "<bos>", "<eos>")


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; <pad>, <bos>, <eos> are 256, 257, 258."""

    @property
    def vocab_size(self) -> int:
        return 256 + len(SPECIALS)

    @property
    def pad_id(self) -> int:
        return 256

    @property
    def bos_id(self) -> int:
        return 257

    @property
    def eos_id(self) -> int:
        return 258

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        ids = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
        return _with_markers(ids, self.bos_id if bos else None, self.eos_id if eos else None)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of the byte ids (special ids skipped; a cut multi-byte character becomes U+FFFD)."""
        data = bytes(int(i) for i in np.asarray(ids).reshape(-1) if 0 <= int(i) < 256)
        return data.decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class CharTokenizer:
    """Characters of a fitted vocabulary; the specials come first, then '<unk>', then the
    characters in sorted order."""

    characters: tuple[str, ...]

    @classmethod
    def fit(cls, texts: Iterable[str]) -> "CharTokenizer":
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(tuple(sorted(seen)))

    @property
    def _offset(self) -> int:
        return len(SPECIALS) + 1  # The specials, then <unk>.

    @property
    def vocab_size(self) -> int:
        return self._offset + len(self.characters)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        index = {char: self._offset + i for i, char in enumerate(self.characters)}
        ids = np.array([index.get(char, self.unk_id) for char in text], np.int32)
        return _with_markers(ids, self.bos_id if bos else None, self.eos_id if eos else None)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of the ids: specials skipped, <unk> as U+FFFD."""
        chars = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == self.unk_id:
                chars.append("\ufffd")
            elif self._offset <= i < self.vocab_size:
                chars.append(self.characters[i - self._offset])
        return "".join(chars)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": "char", "characters": list(self.characters)}))

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        saved = json.loads(path.read_text())
        if saved.get("kind") != "char" or not isinstance(saved.get("characters"), list):
            raise ValueError(f"{path} is not a saved CharTokenizer")
        return cls(tuple(saved["characters"]))


def _with_markers(ids: np.ndarray, bos: int | None, eos: int | None) -> np.ndarray:
    parts = [np.array([bos], np.int32)] if bos is not None else []
    parts.append(ids)
    if eos is not None:
        parts.append(np.array([eos], np.int32))
    return np.concatenate(parts).astype(np.int32)
