"""Subword (BPE) tokenisers through the `tokenizers` library: trained on a corpus, or loaded
from a Hugging Face `tokenizer.json`; either way saved and reloaded as that file.

The same interface as the built-in tokenisers (text/tokenizers.py): `encode` (optionally with
bos/eos ids), `decode`, `vocab_size`, `pad_id`, `bos_id`, `eos_id`.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from jaxdl.errors import UserInputError
from jaxdl.text.tokenizers import SPECIALS


@dataclasses.dataclass(frozen=True)
class SubwordTokenizer:
    tokenizer: tokenizers.Tokenizer

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int) -> "SubwordTokenizer":
        """Byte-level BPE (GPT-2 style: any text encodes, no unknown token) with `vocab_size`
        ids, the specials <pad>, <bos>, <eos> first."""
        tokenizer = tokenizers.Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: Path) -> "SubwordTokenizer":
        """A `tokenizer.json` (e.g. from a Hugging Face checkpoint directory)."""
        try:
            return cls(tokenizers.Tokenizer.from_file(str(path)))
        except Exception as error:  # The library raises plain Exceptions for bad files.
            raise UserInputError(
                f"{path} is not a readable tokenizer.json ({str(error).splitlines()[0][:120]}); "
                "give the file a Hugging Face tokenizer saved."
            ) from error

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def _special(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise UserInputError(f"this tokenizer has no {token} token.")
        return found

    @property
    def pad_id(self) -> int:
        return self._special(SPECIALS[0])

    @property
    def bos_id(self) -> int:
        return self._special(SPECIALS[1])

    @property
    def eos_id(self) -> int:
        return self._special(SPECIALS[2])

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        ids = [self.bos_id] * bos + ids + [self.eos_id] * eos
        return np.asarray(ids, np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)
