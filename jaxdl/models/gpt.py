"""GPT-style decoder language model on the shared Transformer blocks.

Tokens are embedded, given positions (learned, sinusoidal or rotary), and run through pre-norm
causal blocks; a final norm and a head give next-token logits at every position. The head is
the transposed token embedding when `tie_embeddings` (GPT-2), else its own dense layer.

Incremental decoding: `jaxdl.text.generate.init_cache` allocates every attention layer's KV
cache for sequences of a given length, then `__call__(..., decode=True)` takes a prompt in one
call and one token per call after it, each position attending to the cached ones before it
(see transformer._KVCache). Logits equal a full recomputation over the whole prefix.
"""

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers
from jaxdl.models.transformer import (
    MLP_KINDS,
    NORMS,
    TransformerBlock,
    make_norm,
    scanned_blocks,
)
from jaxdl.models.transformer import sinusoidal_positions as sinusoidal_table

POSITIONS = ("learned", "sinusoidal", "rotary")


class DecoderLM(nn.Module):
    has_kv_cache: ClassVar[bool] = True  # `decode=True` works (jaxdl.text.generate).

    num_classes: int  # The next-token vocabulary (set from the dataset).
    vocab_size: int = 0  # The input tokens' vocabulary (set from the dataset).
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 0  # 0: one per query head; fewer: grouped-query attention.
    mlp_dim: int = 1024
    max_length: int = 1024  # Longest sequence (learned positions are a table this long).
    positions: str = "learned"
    norm: str = "layernorm"
    mlp: str = "gelu"
    dropout_rate: float = 0.0
    tie_embeddings: bool = False
    remat: bool = False
    scan_layers: bool = False  # One nn.scan over the blocks: compiles once for any depth.
    attention: str = "auto"  # 'auto': transformer.attention_choice; or 'cudnn', 'xla'.
    dtype: Any = jnp.float32
    batch_axis_name: Any = None

    def __post_init__(self) -> None:
        layers.check_choice("positions", self.positions, POSITIONS)
        layers.check_choice("norm", self.norm, NORMS)
        layers.check_choice("mlp", self.mlp, MLP_KINDS)
        layers.check_choice("attention", self.attention, ("auto", "cudnn", "xla"))
        for field in ("hidden_size", "num_layers", "num_heads", "mlp_dim", "max_length"):
            layers.check_positive_int(field, getattr(self, field))
        if self.hidden_size % self.num_heads:
            raise UserInputError(
                f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads="
                f"{self.num_heads}; each head gets hidden_size / num_heads features."
            )
        if self.num_kv_heads and self.num_heads % self.num_kv_heads:
            raise UserInputError(
                f"model.num_kv_heads={self.num_kv_heads} must divide model.num_heads="
                f"{self.num_heads} (each key/value head serves a group of query heads)."
            )
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @nn.compact
    def __call__(self, tokens: jax.Array, *, train: bool, decode: bool = False) -> jax.Array:
        """(B, T) int token ids -> (B, T, num_classes) float32 next-token logits."""
        self._check_tokens(tokens)
        length = tokens.shape[1]
        start = self._decode_start(decode, length)
        embed = nn.Embed(
            self.vocab_size,
            self.hidden_size,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            embedding_init=layers.named(nn.initializers.normal(0.02), "vocab", "embed"),
            name="embed",
        )
        x = embed(tokens)
        if self.positions == "learned":
            table = self.param(
                "position_embedding",
                layers.named(nn.initializers.normal(0.02), None, "embed"),
                (self.max_length, self.hidden_size),
            )
            x = x + jax.lax.dynamic_slice_in_dim(table, start, length).astype(x.dtype)
        elif self.positions == "sinusoidal":
            table = sinusoidal_table(self.max_length, self.hidden_size)
            x = x + jax.lax.dynamic_slice_in_dim(table, start, length).astype(x.dtype)
        x = layers.Dropout(self.dropout_rate, self.batch_axis_name)(x, deterministic=not train)
        block = {
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "num_kv_heads": self.num_kv_heads,
            "norm": self.norm,
            "mlp": self.mlp,
            "dropout_rate": self.dropout_rate,
            "implementation": None if self.attention == "auto" else self.attention,
            "dtype": self.dtype,
            "batch_axis_name": self.batch_axis_name,
            "rotary": self.positions == "rotary",
        }
        positions = start + jnp.arange(length)
        if self.scan_layers:
            stack = scanned_blocks(
                block, self.num_layers, remat=self.remat, causal=True, train=train, decode=decode
            )
            x, _ = stack(x, None, positions)
        else:
            # Counting self, arguments 3-5 (causal, train, decode) are Python values.
            block_type = (
                nn.remat(TransformerBlock, static_argnums=(3, 4, 5))
                if self.remat
                else TransformerBlock
            )
            for index in range(self.num_layers):
                layer = block_type(**block, name=f"block_{index}")
                x = layer(x, None, True, train, decode, positions)
        x = make_norm(self.norm, self.dtype)(x)
        if self.tie_embeddings:
            logits = embed.attend(x)
        else:
            logits = layers.dense(self.num_classes, ("embed", "vocab"), dtype=self.dtype)(x)
        return logits.astype(jnp.float32)

    def _check_tokens(self, tokens: jax.Array) -> None:
        if self.vocab_size <= 0:
            raise UserInputError(
                "model 'gpt' needs token ids: the dataset has no token vocabulary (vocab_size 0)."
            )
        if self.tie_embeddings and self.num_classes != self.vocab_size:
            raise UserInputError(
                f"model.tie_embeddings=True needs as many output classes ({self.num_classes}) as "
                f"input tokens ({self.vocab_size}); set it to False."
            )
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise UserInputError(
                f"model 'gpt' takes (batch, length) integer token ids; got {tokens.dtype} "
                f"{tokens.shape}."
            )
        if tokens.shape[1] > self.max_length:
            raise UserInputError(
                f"sequences of {tokens.shape[1]} tokens exceed model.max_length="
                f"{self.max_length}; raise model.max_length."
            )

    def _decode_start(self, decode: bool, length: int) -> jax.Array | int:
        """The position of this call's first token: 0, or in decode mode how many came before."""
        if not decode:
            return 0
        ready = self.has_variable("cache", "next_position")
        counter = self.variable("cache", "next_position", lambda: jnp.zeros((), jnp.int32))
        if not ready:  # The allocating call: nothing decoded yet.
            return 0
        start = counter.value
        counter.value = start + length
        return start
