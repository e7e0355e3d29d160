"""Convolution as one matrix product over image patches, for XLA's CPU backend.

XLA's CPU convolution is slow for the small convolutions of research models: on 2 cores a 3x3
conv 32->64 on a 128x28x28 batch took 1650 ms forward and backward, and the same conv written as
shifted slices, concatenated into patches, times the reshaped kernel took 261 ms, with equal
gradients to 1e-6 (shared/README.md). `patch_conv` has the signature of
`lax.conv_general_dilated`, so `nn.Conv(conv_general_dilated=patch_conv)` keeps its parameters
(the same names and shapes) and checkpoints stay interchangeable. Cases it does not cover
(strides, dilation, groups, other layouts) go to `lax.conv_general_dilated` unchanged.
"""

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def _channels_last_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    """Flax's layout: inputs (N, *spatial, C), kernel (*spatial, I, O), outputs like inputs."""
    spatial = tuple(range(1, ndim - 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, ndim - 1, *spatial),
        rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
        out_spec=(0, ndim - 1, *spatial),
    )


def _pads(padding: Any, kernel_shape: Sequence[int]) -> list[tuple[int, int]] | None:
    if padding == "VALID":
        return [(0, 0)] * len(kernel_shape)
    if padding == "SAME":  # Stride 1: what lax does, the extra pixel after.
        return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_shape]
    if isinstance(padding, str):
        return None
    return [(int(lo), int(hi)) for lo, hi in padding]


def patch_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """`lax.conv_general_dilated`, computed as patches @ kernel where that is possible."""
    kernel_shape = rhs.shape[:-2]
    pads = _pads(padding, kernel_shape)
    simple = (
        pads is not None
        and all(s == 1 for s in window_strides)
        and all(d == 1 for d in (lhs_dilation or ()))
        and all(d == 1 for d in (rhs_dilation or ()))
        and feature_group_count == 1
        and batch_group_count == 1
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == _channels_last_numbers(lhs.ndim)
    )
    if not simple:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            batch_group_count,
            precision,
            preferred_element_type,
        )
    padded = jnp.pad(lhs, [(0, 0), *pads, (0, 0)])
    out_spatial = [padded.shape[1 + d] - k + 1 for d, k in enumerate(kernel_shape)]
    # One slice per kernel offset, in the kernel's own (row-major) order, channels innermost.
    slices = [
        padded[(slice(None), *(slice(o, o + n) for o, n in zip(offset, out_spatial, strict=True)))]
        for offset in itertools.product(*(range(k) for k in kernel_shape))
    ]
    patches = jnp.concatenate(slices, axis=-1)
    kernel = rhs.reshape(-1, rhs.shape[-1])
    return jnp.matmul(
        patches, kernel, precision=precision, preferred_element_type=preferred_element_type
    )
