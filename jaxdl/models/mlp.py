"""Multi-layer perceptron over flattened inputs."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models import layers, units


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
    batch_axis_name: Any = None  # Set by the task in shard_map mode (layers.batch_norm).

    def __post_init__(self) -> None:
        layers.check_sizes("hidden_sizes", self.hidden_sizes, allow_empty=True)
        layers.check_choice("activation", self.activation, tuple(layers.ACTIVATIONS))
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    def unit_layers(self) -> list[units.UnitLayer]:
        """The hidden layers' neurons (structured pruning, models/units.py)."""
        return units.dense_chain(list(self.hidden_sizes), self.batch_norm)

    def shrunk_fields(self, kept: dict[str, int]) -> dict[str, Any]:
        """The fields of this MLP with `kept[layer]` neurons in each hidden layer."""
        return {"hidden_sizes": tuple(kept[layer.name] for layer in self.unit_layers())}

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        act = layers.activation(self.activation)
        x = x.reshape(x.shape[0], -1)
        # Megatron's pairing for tensor parallelism: layers alternate between splitting their
        # outputs ('mlp') and their inputs, so consecutive layers need no gather between them.
        width = "embed"
        for size in self.hidden_sizes:
            out = "mlp" if width == "embed" else "embed"
            # Batch norm's own shift makes the dense bias redundant.
            x = layers.dense(size, (width, out), use_bias=not self.batch_norm, dtype=self.dtype)(x)
            if self.batch_norm:
                x = layers.batch_norm(
                    train=train, dtype=self.dtype, name=out, axis_name=self.batch_axis_name
                )(x)
            x = act(x)
            x = layers.Dropout(self.dropout_rate, self.batch_axis_name)(x, deterministic=not train)
            width = out
        x = layers.dense(self.num_classes, (width, "classes"), dtype=self.dtype)(x)
        return x.astype(jnp.float32)
