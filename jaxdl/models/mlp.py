"""Multi-layer perceptron over flattened inputs."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models import layers


class MLP(nn.Module):
    """Dense -> [batch norm] -> activation -> [dropout] per hidden size, then a logits layer.

    Any input rank is flattened to `(batch, features)`. `hidden_sizes=()` gives a linear model.
    """

    num_classes: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    dropout_rate: float = 0.0
    batch_norm: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        layers.check_sizes("hidden_sizes", self.hidden_sizes, allow_empty=True)
        layers.check_choice("activation", self.activation, tuple(layers.ACTIVATIONS))
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        act = layers.activation(self.activation)
        x = x.reshape(x.shape[0], -1)
        for size in self.hidden_sizes:
            # Batch norm's own shift makes the dense bias redundant.
            x = nn.Dense(size, use_bias=not self.batch_norm, dtype=self.dtype)(x)
            if self.batch_norm:
                x = layers.batch_norm(train=train, dtype=self.dtype)(x)
            x = act(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        return x.astype(jnp.float32)
