"""Convolution as one matrix product over image patches, for XLA's CPU backend.

XLA's CPU convolution is slow for the small convolutions of research models: on 2 cores a 3x3
conv 32->64 on a 128x28x28 batch took 1650 ms forward and backward, and the same conv written as
shifted slices, concatenated into patches, times the reshaped kernel took 261 ms, with equal
gradients to 1e-6 (shared/README.md). `patch_conv` has the signature of
`lax.conv_general_dilated`, so `nn.Conv(conv_general_dilated=patch_conv)` keeps its parameters
(the same names and shapes) and checkpoints stay interchangeable.

Covered: channels-last layouts with any number of spatial dims, padding 'VALID', 'SAME',
'SAME_LOWER' or explicit pairs, and kernel dilation; window strides only with `strided=True`
(see the comment in `patch_conv`). A 1x1 kernel is one matmul. Input dilation (transposed
convs), feature or batch groups and other layouts go to `lax.conv_general_dilated` unchanged,
and so does the band of thin layers where it measured faster (`_xla_is_faster`).
"""

import itertools
import math
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


def _pads(
    padding: Any, in_spatial: Sequence[int], window: Sequence[int], strides: Sequence[int]
) -> list[tuple[int, int]]:
    """Explicit (low, high) pads per spatial dim, exactly as lax computes them."""
    if isinstance(padding, str):
        return [tuple(p) for p in lax.padtype_to_pads(in_spatial, window, strides, padding)]
    return [(int(lo), int(hi)) for lo, hi in padding]


# XLA's own CPU convolution measured 1.2-2x faster (forward and both gradients, float32, 2 cores)
# on thin layers, at most 32 output and at least 32 input features, whose patch matrix is 16 to
# 48 MiB: 3x3 32->32 on 16x16 to 24x24 images at batch 64 or 12x12 at 128. Outside that band it
# was slower or level: up to 5x on larger layers (ResNet-18 64->64 on 32x32), 1.1-3x on wider
# ones and 1x1s, 4-9x where the kernel window is larger than the output (3x3 on 2x2 images).
XLA_FEATURES = 32
XLA_PATCH_ELEMENTS = (2**22, 3 * 2**22)


def _xla_is_faster(
    lhs_shape: Sequence[int], rhs_shape: Sequence[int], window: Sequence[int], out: Sequence[int]
) -> bool:
    """The band above, where `lax.conv_general_dilated` is used instead of patches @ kernel."""
    taps = math.prod(rhs_shape[:-2])
    elements = lhs_shape[0] * math.prod(out) * taps * lhs_shape[-1]
    return (
        taps > 1
        and rhs_shape[-1] <= XLA_FEATURES <= lhs_shape[-1]
        and XLA_PATCH_ELEMENTS[0] <= elements < XLA_PATCH_ELEMENTS[1]
        and all(o >= w for o, w in zip(out, window, strict=True))
    )


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
    *,
    xla_where_faster: bool = True,
    strided: bool = False,
) -> jax.Array:
    """`lax.conv_general_dilated`, computed as patches @ kernel where that is possible and (with
    `xla_where_faster`, the default) not slower than XLA's convolution by the rule above."""

    def xla() -> jax.Array:
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

    if (
        # Strided patch products are exact on one device, but under a tensor-split mesh they
        # moved digits_resnet's parameters 7.6e-5 from one device's after a few steps (2e-7
        # through lax), which is not yet explained: off until it is (`strided=True` for tests).
        (not strided and any(s != 1 for s in window_strides))
        or any(d != 1 for d in (lhs_dilation or ()))
        or feature_group_count != 1
        or batch_group_count != 1
        or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        != _channels_last_numbers(lhs.ndim)
    ):
        return xla()
    kernel_shape = rhs.shape[:-2]
    strides = tuple(window_strides)
    dilation = tuple(rhs_dilation or (1,) * len(kernel_shape))
    window = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilation, strict=True)]
    pads = _pads(padding, lhs.shape[1:-1], window, strides)
    out_spatial = [
        (n + lo + hi - w) // s + 1
        for n, (lo, hi), w, s in zip(lhs.shape[1:-1], pads, window, strides, strict=True)
    ]
    if min(out_spatial, default=1) < 1:
        return xla()
    if xla_where_faster and _xla_is_faster(lhs.shape, rhs.shape, window, out_spatial):
        return xla()
    padded = lhs
    if any(lo or hi for lo, hi in pads):
        config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)]
        padded = lax.pad(lhs, jnp.zeros((), lhs.dtype), config)
    # One strided slice per kernel offset, in the kernel's own (row-major) order, channels
    # innermost, so the patches line up with rhs reshaped to (prod(kernel) * I, O).
    slices = []
    for offset in itertools.product(*(range(k) for k in kernel_shape)):
        start = [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [b + (n - 1) * s + 1 for b, n, s in zip(start, out_spatial, strides, strict=True)]
        slices.append(
            lax.slice(
                padded,
                (0, *start, 0),
                (padded.shape[0], *limit, padded.shape[-1]),
                (1, *strides, 1),
            )
        )
    patches = slices[0] if math.prod(kernel_shape) == 1 else jnp.concatenate(slices, axis=-1)
    kernel = rhs.reshape(-1, rhs.shape[-1])
    return jnp.matmul(
        patches, kernel, precision=precision, preferred_element_type=preferred_element_type
    )
