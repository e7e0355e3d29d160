"""Convolutional classifiers: a configurable 1-D/2-D CNN and the classic LeNet-5."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers, units

GLOBAL_POOLS = ("avg", "max", "flatten")
PADDINGS = ("SAME", "VALID")

# conv 6@5x5 SAME keeps HxW, pool halves it, conv 16@5x5 VALID takes 4 off; 12 is the smallest
# side for which the second pool still halves something (>= 2) instead of passing a 1 through.
LENET5_MIN_SIDE = 12


def _channels_last(x: jax.Array) -> jax.Array:
    """`(B, L)` -> `(B, L, 1)`; `(B, L, C)` and `(B, H, W, C)` unchanged."""
    if x.ndim == 2:
        return x[..., None]
    if x.ndim in (3, 4):
        return x
    raise UserInputError(
        f"model 'cnn' takes inputs of shape (batch, length), (batch, length, channels) or "
        f"(batch, height, width, channels); got {x.shape}. Use model.name='mlp' for other "
        "shapes, or set data.input_kind so examples have one of these shapes."
    )


def _global_pool(x: jax.Array, kind: str) -> jax.Array:
    spatial_axes = tuple(range(1, x.ndim - 1))
    if kind == "avg":
        return x.mean(axis=spatial_axes)
    if kind == "max":
        return x.max(axis=spatial_axes)
    return x.reshape(x.shape[0], -1)


def _stage_widths(stage: Any, repeats: int) -> tuple[Any, ...]:
    """A stage's convolution widths: `w` is `repeats` convolutions of width w, a sequence is
    one convolution per entry (left unchecked here; `check_sizes` names a bad entry)."""
    if isinstance(stage, Sequence) and not isinstance(stage, str | bytes):
        return tuple(stage)
    return (stage,) * repeats


class CNN(nn.Module):
    """Stages of conv -> [batch norm] -> activation, each followed by pooling; then a dense head.

    The input rank picks the convolution: `(B, L)` is treated as `(B, L, 1)`, `(B, L, C)` gives
    1-D convolutions and `(B, H, W, C)` 2-D ones. Each entry of `conv_features` is a stage: a
    width (`convs_per_stage` convolutions of that width) or a sequence of widths (one convolution
    each), so `((32, 64),)` is the classic MNIST net's conv32-conv64-pool. `padding` is 'SAME' or
    'VALID'. Pooling (window 2, stride 2) after each stage skips spatial dims that are already of
    size 1, so any number of stages runs on any input size. Dropout is applied to the pooled
    features and after each dense layer of the head.
    """

    num_classes: int
    conv_features: Sequence[int | Sequence[int]] = (32, 64)
    convs_per_stage: int = 1
    kernel_size: int = 3
    padding: str = "SAME"
    pooling: str = "max"
    global_pool: str = "avg"
    dense_sizes: Sequence[int] = ()
    activation: str = "relu"
    batch_norm: bool = True
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    batch_axis_name: Any = None  # Set by the task in shard_map mode (layers.batch_norm).

    def __post_init__(self) -> None:
        flat = [w for stage in self.conv_features for w in _stage_widths(stage, 1)]
        layers.check_sizes("conv_features", flat, allow_empty=False)
        layers.check_positive_int("convs_per_stage", self.convs_per_stage)
        layers.check_positive_int("kernel_size", self.kernel_size)
        layers.check_choice("padding", self.padding, PADDINGS)
        layers.check_choice("pooling", self.pooling, layers.POOLINGS)
        layers.check_choice("global_pool", self.global_pool, GLOBAL_POOLS)
        layers.check_sizes("dense_sizes", self.dense_sizes, allow_empty=True)
        layers.check_choice("activation", self.activation, tuple(layers.ACTIVATIONS))
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    def _conv_widths(self) -> list[list[int]]:
        return [list(_stage_widths(stage, self.convs_per_stage)) for stage in self.conv_features]

    def unit_layers(self) -> list[units.UnitLayer]:
        """The convolutions' channels and the hidden dense layers' neurons (structured
        pruning, models/units.py)."""
        if self.global_pool == "flatten":
            raise UserInputError(
                "config.prune.structure=units: model.global_pool='flatten' mixes each channel "
                "into many head inputs; use 'avg' or 'max'."
            )
        convs = [width for stage in self._conv_widths() for width in stage]
        dense = units.dense_chain(list(self.dense_sizes), batch_norm=False)
        return units.conv_chain(convs, self.batch_norm, "Dense_0/kernel") + dense

    def shrunk_fields(self, kept: dict[str, int]) -> dict[str, Any]:
        """The fields of this CNN with `kept[layer]` units per layer (one width per conv)."""
        index, stages = 0, []
        for stage in self._conv_widths():
            stages.append(tuple(kept[f"Conv_{index + i}"] for i in range(len(stage))))
            index += len(stage)
        dense = tuple(kept[f"Dense_{i}"] for i in range(len(self.dense_sizes)))
        return {"conv_features": tuple(stages), "dense_sizes": dense}

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        act = layers.activation(self.activation)
        x = _channels_last(x)
        kernel = (self.kernel_size,) * (x.ndim - 2)
        for stage in self.conv_features:
            for features in _stage_widths(stage, self.convs_per_stage):
                x = layers.conv(
                    features,
                    kernel,
                    padding=self.padding,
                    use_bias=not self.batch_norm,
                    dtype=self.dtype,
                )(x)
                if self.batch_norm:
                    x = layers.batch_norm(
                        train=train,
                        dtype=self.dtype,
                        name="conv_out",
                        axis_name=self.batch_axis_name,
                    )(x)
                x = act(x)
            x = layers.pool(x, self.pooling)
        x = _global_pool(x, self.global_pool)
        dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
        x = dropout(x, deterministic=not train)
        width = "embed"
        for size in self.dense_sizes:
            out = "mlp" if width == "embed" else "embed"
            x = act(layers.dense(size, (width, out), dtype=self.dtype)(x))
            x = layers.Dropout(self.dropout_rate, self.batch_axis_name)(x, deterministic=not train)
            width = out
        x = layers.dense(self.num_classes, (width, "classes"), dtype=self.dtype)(x)
        return x.astype(jnp.float32)


class LeNet5(nn.Module):
    """LeNet-5 for `(B, H, W, C)` images of at least 12x12.

    conv 6@5x5 SAME -> pool -> conv 16@5x5 VALID -> pool -> dense 120 -> dense 84 -> logits,
    with `activation` after every conv and hidden dense layer. SAME padding on the first conv
    lets 28x28 MNIST play the role of the original 32x32 input.
    """

    num_classes: int
    activation: str = "tanh"
    pooling: str = "avg"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        layers.check_choice("activation", self.activation, tuple(layers.ACTIVATIONS))
        layers.check_choice("pooling", self.pooling, ("avg", "max"))
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train  # No batch norm or dropout: the same function in both modes.
        _check_lenet5_input(x.shape)
        act = layers.activation(self.activation)
        x = act(layers.conv(6, (5, 5), padding="SAME", use_bias=True, dtype=self.dtype)(x))
        x = layers.pool(x, self.pooling)
        x = act(layers.conv(16, (5, 5), padding="VALID", use_bias=True, dtype=self.dtype)(x))
        x = layers.pool(x, self.pooling)
        x = x.reshape(x.shape[0], -1)
        x = act(layers.dense(120, ("embed", "mlp"), dtype=self.dtype)(x))
        x = act(layers.dense(84, ("mlp", "embed"), dtype=self.dtype)(x))
        x = layers.dense(self.num_classes, ("embed", "classes"), dtype=self.dtype)(x)
        return x.astype(jnp.float32)


def _check_lenet5_input(shape: tuple[int, ...]) -> None:
    if len(shape) != 4:
        raise UserInputError(
            f"model 'lenet5' takes images of shape (batch, height, width, channels); got {shape}. "
            "Use model.name='cnn' for 1-D signals or model.name='mlp' for vectors."
        )
    height, width = shape[1:3]
    if min(height, width) < LENET5_MIN_SIDE:
        raise UserInputError(
            f"model 'lenet5' needs images of at least {LENET5_MIN_SIDE}x{LENET5_MIN_SIDE}; "
            f"got {height}x{width}. Use model.name='cnn' for smaller images."
        )
