"""Pieces shared by the model families: activations by name, field checks, norm and pooling."""

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError, close_matches
from jaxdl.models.patch_conv import patch_conv

ACTIVATIONS: MappingProxyType[str, Callable[[jax.Array], jax.Array]] = MappingProxyType(
    {
        "relu": nn.relu,
        "gelu": nn.gelu,
        "silu": nn.silu,
        "tanh": nn.tanh,
        "elu": nn.elu,
        "leaky_relu": nn.leaky_relu,
        "sigmoid": nn.sigmoid,
    }
)

POOLINGS = ("max", "avg", "none")

# float64 is left out: with x64 disabled (JAX's default) it would silently compute in float32.
COMPUTE_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))

# Flax's default momentum of 0.99 leaves running statistics far from the batch statistics for
# the first few hundred steps, which makes eval accuracy of short research runs misleading.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def check_choice(field: str, value: Any, choices: Sequence[str]) -> None:
    """Raise a UserInputError naming `model.<field>` when `value` is not one of `choices`."""
    if value not in choices:
        hint = close_matches(value, choices) if isinstance(value, str) else ""
        raise UserInputError(
            f"model.{field}={value!r} is not supported.{hint} "
            f"Set model.{field} to one of: {', '.join(choices)}."
        )


def check_positive_int(field: str, value: Any) -> None:
    """Raise a UserInputError naming `model.<field>` unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"model.{field}={value!r} must be a positive integer.")


def check_sizes(field: str, value: Any, *, allow_empty: bool) -> None:
    """Raise a UserInputError naming `model.<field>` unless `value` is a sequence of ints >= 1."""
    example = "(256, 256)"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise UserInputError(
            f"model.{field}={value!r} must be a sequence of positive integers, e.g. {example}."
        )
    if not value and not allow_empty:
        raise UserInputError(f"model.{field} is empty; give at least one size, e.g. {example}.")
    for size in value:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UserInputError(
                f"model.{field}={tuple(value)!r} must contain only positive integers, "
                f"e.g. {example}."
            )


def check_rate(field: str, value: Any) -> None:
    """Raise a UserInputError naming `model.<field>` unless 0 <= value < 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise UserInputError(f"model.{field}={value!r} must be a number in [0, 1).")


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function registered under `name` (the value of `model.activation`)."""
    check_choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]


def resolve_dtype(value: Any) -> jnp.dtype:
    """Turn `model.dtype` ('float32', 'bfloat16', jnp.float32, ...) into a jnp.dtype."""
    try:
        dtype = None if value is None else jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype not in COMPUTE_DTYPES:
        raise UserInputError(
            f"model.dtype={value!r} is not a supported compute dtype. "
            f"Set model.dtype to one of: {', '.join(d.name for d in COMPUTE_DTYPES)}."
        )
    return dtype


def named(init: Callable, *names: str | None) -> Callable:
    """An initializer whose parameter carries logical axis names, one per dimension.

    The engine maps the names to mesh axes (LOGICAL_AXIS_RULES in engine/sharding.py); the
    model itself computes the same either way.
    """
    return nn.with_logical_partitioning(init, names)


def dense(features: int, names: tuple[str, str], *, use_bias: bool = True, dtype: Any) -> nn.Dense:
    """A dense layer whose kernel is named (input, output) and bias (output,)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=named(nn.initializers.lecun_normal(), *names),
        bias_init=named(nn.initializers.zeros_init(), names[1]),
    )


def conv(
    features: int,
    kernel_size: Sequence[int],
    *,
    padding: Any,
    use_bias: bool,
    dtype: Any,
    strides: int = 1,
    zero_init: bool = False,
) -> nn.Conv:
    """Every convolution is built here, so its implementation is chosen in one place.

    On CPU it is computed as patches @ kernel (patch_conv.py): 2-3x faster training steps for
    the digits CNN than XLA's CPU convolution. Accelerators keep their own convolution. The
    parameters are the same either way.
    """
    kernel_init = nn.initializers.zeros_init() if zero_init else nn.initializers.lecun_normal()
    return nn.Conv(
        features,
        tuple(kernel_size),
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        conv_general_dilated=patch_conv if jax.default_backend() == "cpu" else None,
        kernel_init=named(kernel_init, *[None] * len(kernel_size), "conv_in", "conv_out"),
        bias_init=named(nn.initializers.zeros_init(), "conv_out"),
    )


def batch_norm(
    *,
    train: bool,
    dtype: Any,
    name: str = "norm",
    axis_name: Any = None,
    zero_scale: bool = False,
) -> nn.BatchNorm:
    """Batch norm over the last axis, statistics in the 'batch_stats' collection.

    `axis_name` (the mesh's batch axes, inside a per-device shard_map step) averages the
    statistics over every device's examples: synchronised batch norm. A jit step over a sharded
    batch needs none, its mean already is over the whole batch.
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        dtype=dtype,
        param_dtype=jnp.float32,
        axis_name=axis_name if train else None,
        scale_init=named(
            nn.initializers.zeros_init() if zero_scale else nn.initializers.ones_init(), name
        ),
        bias_init=named(nn.initializers.zeros_init(), name),
    )


class Dropout(nn.Module):
    """`flax.linen.Dropout` (the same draws), plus exact draws inside a per-device step.

    With `batch_axis_name` set (a shard_map step), each device draws the mask of the whole
    batch and keeps its own rows: the same mask a jit step over the sharded batch draws, so both
    modes train identically. Drawing n times the bits costs little next to the layer itself.
    """

    rate: float
    batch_axis_name: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        rng = self.make_rng("dropout")
        if self.batch_axis_name is None:
            mask = jax.random.bernoulli(rng, p=keep, shape=x.shape)
        else:
            shards = jax.lax.psum(1, self.batch_axis_name)
            index = jax.lax.axis_index(self.batch_axis_name)
            rows = x.shape[0]
            whole = jax.random.bernoulli(rng, p=keep, shape=(rows * shards, *x.shape[1:]))
            mask = jax.lax.dynamic_slice_in_dim(whole, index * rows, rows)
        return jax.lax.select(mask, x / keep, jnp.zeros_like(x))


def _pool_by_reshape(x: jax.Array, window: tuple[int, ...], kind: str) -> jax.Array:
    """Non-overlapping pooling as a reshape and a reduction, for XLA's CPU backend.

    XLA's CPU reduce_window and its gradient (select_and_scatter) are slow: max-pooling a
    128x24x24x64 batch forward and backward took 83 ms on 2 cores, this 11 ms. The values are
    the same as `nn.max_pool` / `nn.avg_pool` with VALID padding (a trailing odd row is dropped
    either way); the max's gradient differs only on exact ties within a window, which it splits
    evenly where select_and_scatter gives it all to the first.
    """
    spatial = x.shape[1:-1]
    kept = tuple(size // w * w for size, w in zip(spatial, window, strict=True))
    x = x[(slice(None), *(slice(0, k) for k in kept), slice(None))]
    split = [x.shape[0]]
    for size, w in zip(kept, window, strict=True):
        split += [size // w, w]
    axes = tuple(range(2, 2 * len(window) + 1, 2))
    grouped = x.reshape(*split, x.shape[-1])
    return grouped.max(axis=axes) if kind == "max" else grouped.mean(axis=axes)


def pool(x: jax.Array, kind: str) -> jax.Array:
    """Window-2 stride-2 pooling over the spatial axes of a channels-last `(B, *spatial, C)` array.

    Spatial axes of size 1 are left alone instead of being pooled away, so a deep stack of stages
    still runs on tiny inputs (e.g. 8x8 digits through four stages ends at 1x1).
    """
    window = tuple(2 if size >= 2 else 1 for size in x.shape[1:-1])
    if kind in ("max", "avg") and jax.default_backend() == "cpu":
        return _pool_by_reshape(x, window, kind)
    if kind == "max":
        return nn.max_pool(x, window, strides=window)
    if kind == "avg":
        return nn.avg_pool(x, window, strides=window)
    if kind == "none":
        return x
    raise UserInputError(
        f"model.pooling={kind!r} is not supported; use one of: {', '.join(POOLINGS)}."
    )
