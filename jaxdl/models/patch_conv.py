"""Convolution as one matrix product over image patches, for XLA's CPU backend.

XLA's CPU convolution is slow for the small convolutions of research models: on 2 cores a 3x3
conv 32->64 on a 128x28x28 batch took 1650 ms forward and backward, and the same conv written as
shifted slices, concatenated into patches, times the reshaped kernel took 261 ms, with equal
gradients to 1e-6 (shared/README.md). `patch_conv` has the signature of
`lax.conv_general_dilated`, so `nn.Conv(conv_general_dilated=patch_conv)` keeps its parameters
(the same names and shapes) and checkpoints stay interchangeable.

Stride-1 convolutions (all but downsampling) go further: the batch is cut into chunks whose
patch matrix fits in cache, and a custom VJP recomputes each chunk's patches for the kernel
gradient and scatters the input gradient back per chunk, so the whole batch's patches are never
written to memory (conv 32->64 above: forward 118 -> 29 ms, with both gradients 235 -> 109 ms;
PyTorch's oneDNN convolution 52 and 117 ms). Being a custom VJP, it supports reverse-mode
differentiation (gradients of gradients too), not forward-mode (`jax.jvp`).

Covered: channels-last layouts with any number of spatial dims, padding 'VALID', 'SAME',
'SAME_LOWER' or explicit pairs, kernel dilation and window strides. A 1x1 kernel is one matmul.
Input dilation (transposed convs), feature or batch groups and other layouts go to
`lax.conv_general_dilated` unchanged, and so does the band of thin layers where it measured
faster (`_xla_is_faster`).
"""

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

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

    # A symbolic batch (jax.export with a polymorphic batch) is not cut into chunks: its patch
    # matrix is formed whole, which gives the chunked products' values.
    symbolic_batch = not isinstance(lhs.shape[0], int)
    if (
        not all(isinstance(d, int) for d in (*lhs.shape[1:], *rhs.shape))
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
    if (
        xla_where_faster
        and not symbolic_batch
        and _xla_is_faster(lhs.shape, rhs.shape, window, out_spatial)
    ):
        return xla()
    stride_1 = all(s == 1 for s in strides) and all(lo >= 0 and hi >= 0 for lo, hi in pads)
    if stride_1 and not symbolic_batch:
        chunk = _chunk_size(lhs.shape[0], math.prod(out_spatial) * math.prod(rhs.shape[:-1]))
        settings = _Settings(
            tuple(pads), dilation, tuple(out_spatial), chunk, precision, preferred_element_type
        )
        return _chunked_conv(lhs, rhs, settings)
    patches = _patches(_pad(lhs, pads), kernel_shape, dilation, out_spatial, strides)
    kernel = rhs.reshape(-1, rhs.shape[-1])
    return jnp.matmul(
        patches, kernel, precision=precision, preferred_element_type=preferred_element_type
    )


def _pad(lhs: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
    if not any(lo or hi for lo, hi in pads):
        return lhs
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)]
    return lax.pad(lhs, jnp.zeros((), lhs.dtype), config)


def _offsets(kernel_shape: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, ...]]:
    """Each kernel tap's start in the padded input, in the kernel's own (row-major) order."""
    return [
        tuple(o * d for o, d in zip(offset, dilation, strict=True))
        for offset in itertools.product(*(range(k) for k in kernel_shape))
    ]


def _patches(
    padded: jax.Array,
    kernel_shape: Sequence[int],
    dilation: Sequence[int],
    out_spatial: Sequence[int],
    strides: Sequence[int],
) -> jax.Array:
    """(N, *out, taps * C): one strided slice per tap, channels innermost, so the patches line
    up with the kernel reshaped to (taps * I, O)."""
    slices = []
    for start in _offsets(kernel_shape, dilation):
        limit = [b + (n - 1) * s + 1 for b, n, s in zip(start, out_spatial, strides, strict=True)]
        slices.append(
            lax.slice(
                padded,
                (0, *start, 0),
                (padded.shape[0], *limit, padded.shape[-1]),
                (1, *strides, 1),
            )
        )
    return slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)


# Stride-1 convolutions run over the batch in chunks whose patch matrix stays in cache (about 4
# MiB): built for the whole batch it is written to memory and read back, which took 3/4 of the
# forward pass (3x3 conv 32->64, 128x26x26, 2 cores: 118 ms whole, 31-37 ms in chunks of 4-8
# examples, against 52 ms for PyTorch's oneDNN convolution).
CHUNK_PATCH_ELEMENTS = 2**20


def _chunk_size(batch: int, patch_elements_per_example: int) -> int:
    """The largest divisor of `batch` whose patches fit CHUNK_PATCH_ELEMENTS (at least 1)."""
    most = max(1, CHUNK_PATCH_ELEMENTS // max(1, patch_elements_per_example))
    return max(d for d in range(1, min(batch, most) + 1) if batch % d == 0)


class _Settings(NamedTuple):
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    out_spatial: tuple[int, ...]
    chunk: int
    precision: Any
    preferred_element_type: Any


def _over_chunks(
    body: Callable[[tuple[jax.Array, ...]], tuple[jax.Array, Any]],
    arrays: tuple[jax.Array, ...],
    out_example_shape: tuple[int, ...],
    out_dtype: Any,
    chunk: int,
    total: Any = None,
) -> tuple[jax.Array, Any]:
    """Applies `body` to examples {j, j + k, j + 2k, ...} of `arrays` for each j < k = N / chunk.

    Returns the per-example outputs in batch order and the sum of the bodies' second outputs.
    Strided rather than contiguous chunks keep each chunk spread over every device of a
    batch-sharded mesh, so no device waits for another's examples.
    """
    batch = arrays[0].shape[0]
    count = batch // chunk
    if count == 1:
        value, total = body(arrays)
        return value.astype(out_dtype), total
    grouped = tuple(a.reshape(chunk, count, *a.shape[1:]) for a in arrays)

    def step(j: jax.Array, carry: tuple[jax.Array, Any]) -> tuple[jax.Array, Any]:
        out, acc = carry
        # The barrier makes the chunk a plain array first: XLA's CPU fusions that slice one
        # dynamically indexed input several times ran several times slower (see rnn_cells.py).
        parts = lax.optimization_barrier(
            tuple(lax.dynamic_index_in_dim(g, j, 1, keepdims=False) for g in grouped)
        )
        value, part = body(parts)
        out = lax.dynamic_update_index_in_dim(out, value.astype(out.dtype), j, 1)
        return out, (None if acc is None else acc + part)

    out = jnp.zeros((chunk, count, *out_example_shape), out_dtype)
    out, total = lax.fori_loop(0, count, step, (out, total))
    return out.reshape(batch, *out_example_shape), total


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _chunked_conv(lhs: jax.Array, rhs: jax.Array, settings: _Settings) -> jax.Array:
    """Stride-1 patches @ kernel over batch chunks. Its gradient (below) recomputes each
    chunk's patches rather than keeping the whole batch's."""
    kernel_shape, features = rhs.shape[:-2], rhs.shape[-1]
    padded = _pad(lhs, settings.pads)
    out_spatial = settings.out_spatial
    kernel = rhs.reshape(-1, features)
    ones = (1,) * len(kernel_shape)

    def body(chunk: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        patches = _patches(chunk[0], kernel_shape, settings.dilation, out_spatial, ones)
        product = jnp.matmul(
            patches,
            kernel,
            precision=settings.precision,
            preferred_element_type=settings.preferred_element_type,
        )
        return product, None

    dtype = settings.preferred_element_type
    dtype = jnp.result_type(lhs, rhs) if dtype is None else dtype
    out, _ = _over_chunks(body, (padded,), (*out_spatial, features), dtype, settings.chunk)
    return out


def _chunked_conv_fwd(
    lhs: jax.Array, rhs: jax.Array, settings: _Settings
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _chunked_conv(lhs, rhs, settings), (lhs, rhs)


def _chunked_conv_bwd(
    settings: _Settings, residuals: tuple[jax.Array, jax.Array], grad: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per chunk: the kernel gradient patches^T @ grad, and the input gradient by scattering
    grad @ kernel^T back over the taps (col2im), both while the chunk is in cache."""
    lhs, rhs = residuals
    kernel_shape, in_features = rhs.shape[:-2], rhs.shape[-2]
    padded = _pad(lhs, settings.pads)
    out_spatial = settings.out_spatial
    kernel = rhs.reshape(-1, rhs.shape[-1])
    offsets = _offsets(kernel_shape, settings.dilation)
    ones = (1,) * len(kernel_shape)
    precision = settings.precision

    def body(chunk: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        x, g = chunk
        patches = _patches(x, kernel_shape, settings.dilation, out_spatial, ones)
        rows = patches.reshape(-1, patches.shape[-1])
        kernel_grad = jnp.matmul(
            rows.T,
            g.reshape(-1, g.shape[-1]),
            precision=precision,
            preferred_element_type=jnp.float32,
        )
        patch_grad = lax.optimization_barrier(jnp.matmul(g, kernel.T, precision=precision))
        # float32 sums of the taps' overlaps, as XLA's own convolution gradient accumulates.
        input_grad = jnp.zeros(x.shape, jnp.promote_types(patch_grad.dtype, jnp.float32))
        for tap, start in enumerate(offsets):
            part = patch_grad[..., tap * in_features : (tap + 1) * in_features]
            spatial = zip(start, x.shape[1:-1], out_spatial, strict=True)
            config = [(0, 0, 0), *((b, n - b - o, 0) for b, n, o in spatial), (0, 0, 0)]
            input_grad = input_grad + lax.pad(part, jnp.zeros((), part.dtype), config)
        return input_grad, kernel_grad

    padded_grad, kernel_grad = _over_chunks(
        body,
        (padded, grad),
        padded.shape[1:],
        jnp.result_type(grad, rhs),
        settings.chunk,
        jnp.zeros(kernel.shape, jnp.float32),
    )
    crop = tuple(
        slice(lo, lo + n) for (lo, _), n in zip(settings.pads, lhs.shape[1:-1], strict=True)
    )
    input_grad = padded_grad[(slice(None), *crop, slice(None))].astype(lhs.dtype)
    return input_grad, kernel_grad.reshape(rhs.shape).astype(rhs.dtype)


_chunked_conv.defvjp(_chunked_conv_fwd, _chunked_conv_bwd)
