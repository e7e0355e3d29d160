"""BERT (Devlin et al. 2019): a post-norm Transformer encoder over token ids.

`BertEncoder` is the encoder alone: word + position + token-type embeddings, a LayerNorm,
dropout, then `num_layers` post-norm blocks of the shared library (transformer.py); it returns
the last hidden states. Its parameters are laid out so that Hugging Face BERT checkpoints map
onto them one to one (jaxdl/pretrained.py). `Bert` is the model family `bert` for training: the
encoder under the name 'bert' and a head, 'classify' (a tanh pooler on the first token, [CLS],
then a classifier) or 'mlm' (dense + GELU + LayerNorm, then logits over the vocabulary through
the word embeddings, as in BertForMaskedLM).

Two differences from the reference in training only: dropout acts on the attention output, not
on the attention weights (the fused kernel has none), and the defaults are BERT-base's.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers
from jaxdl.models.transformer import MLP_KINDS, Encoder, make_norm

HEADS = ("classify", "mlm")
INIT_STD = 0.02  # BERT's initializer_range, for the embeddings.


def padding_mask(
    length: int, *, lengths: jax.Array | None, attention_mask: jax.Array | None
) -> jax.Array | None:
    """(B, length) bool, True at real tokens, from an explicit mask or from the lengths."""
    if attention_mask is not None:
        return jnp.asarray(attention_mask).astype(bool)
    if lengths is not None:
        return jnp.arange(length)[None, :] < jnp.asarray(lengths)[:, None]
    return None


class BertEncoder(nn.Module):
    """Token ids (B, T) -> last hidden states (B, T, hidden_size)."""

    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    max_length: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    norm_epsilon: float = 1e-12
    mlp: str = "gelu_exact"
    remat: bool = False
    dtype: Any = jnp.float32
    batch_axis_name: Any = None

    def setup(self) -> None:
        def embed(rows: int, first_axis: str | None, name: str) -> nn.Embed:
            init = layers.named(nn.initializers.normal(INIT_STD), first_axis, "embed")
            return nn.Embed(
                rows,
                self.hidden_size,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                embedding_init=init,
                name=name,
            )

        self.word_embeddings = embed(self.vocab_size, "vocab", "word_embeddings")
        self.position_embeddings = embed(self.max_length, None, "position_embeddings")
        self.token_type_embeddings = embed(self.type_vocab_size, None, "token_type_embeddings")
        self.embeddings_norm = make_norm("layernorm", self.dtype, self.norm_epsilon)
        self.dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
        block = {
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "pre_norm": False,
            "mlp": self.mlp,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.dropout_rate,
            "mlp_dropout_rate": 0.0,
            "norm_epsilon": self.norm_epsilon,
            "dtype": self.dtype,
            "batch_axis_name": self.batch_axis_name,
        }
        self.encoder = Encoder(self.num_layers, block, remat=self.remat)

    def __call__(
        self,
        input_ids: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        lengths: jax.Array | None = None,
        token_types: jax.Array | None = None,
        train: bool,
    ) -> jax.Array:
        ids = jnp.asarray(input_ids).astype(jnp.int32)
        length = ids.shape[1]
        if length > self.max_length:
            raise UserInputError(
                f"sequences of {length} tokens are longer than model.max_length="
                f"{self.max_length}; truncate them or raise max_length."
            )
        types = jnp.zeros_like(ids) if token_types is None else jnp.asarray(token_types, jnp.int32)
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(jnp.arange(length))[None]
            + self.token_type_embeddings(types)
        )
        x = self.dropout(self.embeddings_norm(x), deterministic=not train)
        keep = padding_mask(length, lengths=lengths, attention_mask=attention_mask)
        # Every query sees the real keys only: (B, 1, T, T), broadcast over the heads.
        mask = (
            None
            if keep is None
            else jnp.broadcast_to(keep[:, None, None, :], (*ids.shape[:1], 1, length, length))
        )
        return self.encoder(x, mask=mask, train=train)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Scores over the vocabulary through the word embeddings (the tied decoder)."""
        return self.word_embeddings.attend(hidden)


class Bert(nn.Module):
    """The `bert` model family: BertEncoder plus a classification or masked-LM head."""

    num_classes: int
    vocab_size: int = 0  # Set from the dataset's token vocabulary.
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    max_length: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    norm_epsilon: float = 1e-12
    mlp: str = "gelu_exact"
    head: str = "classify"
    remat: bool = False
    dtype: Any = jnp.float32
    batch_axis_name: Any = None

    def __post_init__(self) -> None:
        layers.check_choice("head", self.head, HEADS)
        layers.check_choice("mlp", self.mlp, MLP_KINDS)
        if not self.vocab_size:
            raise UserInputError(
                "model 'bert' reads token ids, but the dataset declares no vocab_size; train it "
                "on a tokenised text dataset."
            )
        for field in ("vocab_size", "hidden_size", "num_layers", "num_heads", "mlp_dim"):
            layers.check_positive_int(field, getattr(self, field))
        for field in ("max_length", "type_vocab_size"):
            layers.check_positive_int(field, getattr(self, field))
        if self.hidden_size % self.num_heads:
            raise UserInputError(
                f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads="
                f"{self.num_heads}; each head gets hidden_size / num_heads features."
            )
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    def encoder_fields(self) -> dict[str, Any]:
        """BertEncoder's fields as this model sets them."""
        names = ("vocab_size", "hidden_size", "num_layers", "num_heads", "mlp_dim", "max_length")
        names += ("type_vocab_size", "dropout_rate", "norm_epsilon", "mlp", "remat", "dtype")
        return {name: getattr(self, name) for name in (*names, "batch_axis_name")}

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        lengths: jax.Array | None = None,
        token_types: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        train: bool,
    ) -> jax.Array:
        encoder = BertEncoder(**self.encoder_fields(), name="bert")
        hidden = encoder(
            x,
            attention_mask=attention_mask,
            lengths=lengths,
            token_types=token_types,
            train=train,
        )
        if self.head == "mlm":
            # BertForMaskedLM's prediction head; its decoder is the word embeddings.
            y = _dense(self.hidden_size, ("embed", "mlp"), "mlm_transform", self.dtype)(hidden)
            y = nn.gelu(y, approximate=self.mlp != "gelu_exact")
            y = make_norm("layernorm", self.dtype, self.norm_epsilon).clone(
                parent=self, name="mlm_norm"
            )(y)
            bias = self.param(
                "mlm_bias", layers.named(nn.initializers.zeros_init(), "vocab"), (self.vocab_size,)
            )
            return (encoder.logits(y) + bias).astype(jnp.float32)
        pooled = _dense(self.hidden_size, ("embed", "mlp"), "pooler", self.dtype)(hidden[:, 0])
        dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
        pooled = dropout(jnp.tanh(pooled), deterministic=not train)
        classifier = _dense(self.num_classes, ("mlp", "classes"), "classifier", self.dtype)
        return classifier(pooled).astype(jnp.float32)


def _dense(features: int, names: tuple[str, str], name: str, dtype: Any) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=layers.named(nn.initializers.lecun_normal(), *names),
        bias_init=layers.named(nn.initializers.zeros_init(), names[1]),
        name=name,
    )
