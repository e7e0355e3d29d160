"""Encoder-decoder Transformer (T5-style, Raffel et al. 2020) on the shared Transformer blocks.

The encoder reads the source tokens (padded positions masked out of every attention); the
decoder reads the target shifted right behind a start token, with causal self-attention and
cross-attention over the encoder's outputs, and predicts the next target token at every
position. Training uses teacher forcing through `__call__`; generation calls `encode` once and
`decode` per step (jaxdl/text/decoding.py), through `model.apply(..., method=...)`.

Positions: 'learned' tables (up to `max_length` tokens), fixed 'sinusoidal' tables, or
'rotary' (RoPE in every self-attention, no table). `tie_embeddings` shares one table between
the source tokens, the target tokens and the output layer (as T5 does); it needs the source and
target vocabularies to be the same size.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers
from jaxdl.models.transformer import (
    MLP_KINDS,
    NORMS,
    Decoder,
    Encoder,
    sinusoidal_positions,
)

POSITIONS = ("learned", "sinusoidal", "rotary")


class Seq2SeqTransformer(nn.Module):
    num_classes: int  # Target vocabulary (from the dataset).
    vocab_size: int = 0  # Source vocabulary (from the dataset); 0: the same as num_classes.
    hidden_size: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    norm: str = "layernorm"
    mlp: str = "gelu"
    positions: str = "learned"
    max_length: int = 64  # Longest source or target a 'learned' position table covers.
    tie_embeddings: bool = False
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Any = jnp.float32
    batch_axis_name: Any = None  # Set by the task in shard_map mode.

    def __post_init__(self) -> None:
        layers.check_choice("norm", self.norm, NORMS)
        layers.check_choice("mlp", self.mlp, MLP_KINDS)
        layers.check_choice("positions", self.positions, POSITIONS)
        for field in ("hidden_size", "encoder_layers", "decoder_layers", "num_heads", "mlp_dim"):
            layers.check_positive_int(field, getattr(self, field))
        layers.check_positive_int("max_length", self.max_length)
        if self.hidden_size % self.num_heads:
            raise UserInputError(
                f"model.hidden_size={self.hidden_size} is not divisible by "
                f"model.num_heads={self.num_heads}; make it a multiple of num_heads."
            )
        if self.positions != "learned" and self.hidden_size % 2:
            raise UserInputError(
                f"model.positions={self.positions!r} needs an even model.hidden_size "
                f"(got {self.hidden_size}); make it even or use positions='learned'."
            )
        if self.tie_embeddings and self.source_vocab != self.num_classes:
            raise UserInputError(
                f"model.tie_embeddings=True needs one vocabulary, but the source has "
                f"{self.source_vocab} ids and the target {self.num_classes}; set it to False."
            )
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @property
    def source_vocab(self) -> int:
        return self.vocab_size or self.num_classes

    def setup(self) -> None:
        def embedding(size: int, name: str) -> nn.Embed:
            return nn.Embed(
                size,
                self.hidden_size,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                embedding_init=layers.named(nn.initializers.normal(1.0), "vocab", "embed"),
                name=name,
            )

        self.source_embedding = embedding(self.source_vocab, "source_embedding")
        if not self.tie_embeddings:
            self.target_embedding = embedding(self.num_classes, "target_embedding")
            self.head = layers.dense(self.num_classes, ("embed", "classes"), dtype=self.dtype)
        if self.positions == "learned":
            table = layers.named(nn.initializers.normal(0.02), None, "embed")
            shape = (self.max_length, self.hidden_size)
            self.source_positions = self.param("source_positions", table, shape)
            self.target_positions = self.param("target_positions", table, shape)
        block = {
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "norm": self.norm,
            "mlp": self.mlp,
            "dropout_rate": self.dropout_rate,
            "dtype": self.dtype,
            "batch_axis_name": self.batch_axis_name,
            "rotary": self.positions == "rotary",
        }
        self.encoder = Encoder(self.encoder_layers, block, remat=self.remat)
        self.decoder = Decoder(self.decoder_layers, block, remat=self.remat)
        self.dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)

    def _embed(self, tokens: jax.Array, table: nn.Embed, positions: Any, train: bool) -> jax.Array:
        length = tokens.shape[1]
        if length > self.max_length and self.positions == "learned":
            raise UserInputError(
                f"sequences of {length} tokens exceed model.max_length={self.max_length} "
                "(the learned position table); raise model.max_length."
            )
        x = table(tokens)
        if self.positions == "learned":
            x = x + positions[:length].astype(x.dtype)
        elif self.positions == "sinusoidal":
            x = x + sinusoidal_positions(length, self.hidden_size).astype(x.dtype)
        return self.dropout(x, deterministic=not train)

    def encode(
        self, source: jax.Array, source_mask: jax.Array, *, train: bool = False
    ) -> jax.Array:
        """(B, S, hidden) encoder outputs of source ids (B, S); `source_mask` True at real ids."""
        positions = self.source_positions if self.positions == "learned" else None
        x = self._embed(source, self.source_embedding, positions, train)
        return self.encoder(x, mask=source_mask[:, None, None, :], train=train)

    def decode(
        self,
        encoded: jax.Array,
        source_mask: jax.Array,
        decoder_input: jax.Array,
        *,
        train: bool = False,
    ) -> jax.Array:
        """(B, T, num_classes) float32 logits of the next target token at each position, from
        the decoder input ids (B, T): the start token, then the target shifted right."""
        table = self.source_embedding if self.tie_embeddings else self.target_embedding
        positions = self.target_positions if self.positions == "learned" else None
        x = self._embed(decoder_input, table, positions, train)
        x = self.decoder(x, encoded, source_mask=source_mask, train=train)
        if self.tie_embeddings:
            # T5's rescaling: the shared table's unit-variance rows would give logits too large.
            logits = table.attend(x * self.hidden_size**-0.5)
        else:
            logits = self.head(x)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        source: jax.Array,
        decoder_input: jax.Array,
        *,
        source_lengths: jax.Array,
        train: bool,
    ) -> jax.Array:
        """Teacher forcing: logits (B, T, num_classes) for every target position at once."""
        source_mask = jnp.arange(source.shape[1]) < source_lengths[:, None]
        encoded = self.encode(source, source_mask, train=train)
        return self.decode(encoded, source_mask, decoder_input, train=train)
