"""CPU speed paths against the plain ones: patch_conv against lax.conv_general_dilated, pooling
by reshape against Flax's, values and gradients."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxdl.models.patch_conv import patch_conv

_LAYOUTS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def _normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _assert_patch_conv_matches_lax(x, w, strides, padding, dilation):
    """patch_conv's outputs and gradients (sum of sin of the outputs) equal lax's."""
    layout = _LAYOUTS[x.ndim - 2]

    @jax.jit
    def outputs_and_grads(x, w):
        def loss(conv, x, w):
            y = conv(x, w, strides, padding, None, dilation, layout)
            return jnp.sum(jnp.sin(y)), y

        # Shapes this small would go to lax by the speed rule.
        patches = functools.partial(patch_conv, xla_where_faster=False)
        return [
            jax.grad(functools.partial(loss, conv), (0, 1), has_aux=True)(x, w)
            for conv in (patches, lax.conv_general_dilated)
        ]

    (grads, out), (expected_grads, expected_out) = outputs_and_grads(x, w)
    chex.assert_trees_all_close(out, expected_out, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(grads, expected_grads, rtol=1e-5, atol=1e-4)


# Mostly 2-tap kernels: each kernel offset adds a slice to compile, and compiling dominates.
@pytest.mark.parametrize(
    ("spatial", "kernel", "strides", "padding", "dilation"),
    [
        ((7, 7), (3, 3), (2, 2), "SAME", (1, 1)),  # Odd input size, stride 2 (ResNet).
        ((8, 7), (2, 3), (1, 3), "SAME", (2, 1)),  # Unequal strides, dilated SAME.
        ((6, 7), (2, 2), (2, 1), ((2, 0), (0, 3)), (1, 2)),  # Explicit, asymmetric pads.
        ((9, 8), (2, 2), (2, 1), "VALID", (3, 2)),
        ((7, 6), (1, 1), (2, 2), "VALID", (1, 1)),  # 1x1 projection: subsample, matmul.
        ((7, 6), (1, 1), (2, 3), "SAME", (1, 1)),
        ((11,), (3,), (2,), "SAME", (1,)),  # 1-D.
        ((10,), (2,), (3,), ((1, 2),), (3,)),
        ((5, 6, 5), (2, 1, 2), (2, 1, 1), "SAME", (1, 1, 2)),  # 3-D.
    ],
)
def test_patch_conv_matches_lax_values_and_gradients(spatial, kernel, strides, padding, dilation):
    x = _normal((2, *spatial, 3), seed=0)
    w = _normal((*kernel, 3, 4), seed=1)
    _assert_patch_conv_matches_lax(x, w, strides, padding, dilation)


@pytest.mark.parametrize(
    ("spatial", "kernel", "padding", "dilation", "chunk_elements"),
    [
        ((6, 5), (3, 3), "VALID", (1, 1), 2 * 4 * 3 * 27),  # 2 examples (of 4x3x27) per chunk.
        ((5, 6), (2, 3), ((2, 0), (1, 3)), (2, 1), 1),  # One example per chunk, explicit pads.
        ((9,), (3,), "SAME", (2,), 1),  # 1-D, dilated SAME.
        ((4, 5, 4), (2, 1, 2), "SAME", (1, 1, 1), 1),  # 3-D.
    ],
)
def test_stride_one_patch_conv_over_batch_chunks_matches_lax(
    monkeypatch, spatial, kernel, padding, dilation, chunk_elements
):
    """The stride-1 path runs over batch chunks with its own gradient: force several chunks."""
    from jaxdl.models import patch_conv as patch_conv_module

    monkeypatch.setattr(patch_conv_module, "CHUNK_PATCH_ELEMENTS", chunk_elements)
    x = _normal((6, *spatial, 3), seed=2)
    w = _normal((*kernel, 3, 4), seed=3)
    _assert_patch_conv_matches_lax(x, w, (1,) * len(spatial), padding, dilation)


def test_patch_conv_hands_input_dilation_groups_and_other_layouts_to_lax():
    x, w = _normal((2, 5, 5, 4), seed=0), _normal((3, 3, 4, 4), seed=1)
    channels_last = ("NHWC", "HWIO", "NHWC")
    cases = [
        (x, w[..., :2, :], channels_last, {"feature_group_count": 2}),
        (x, w, channels_last, {"lhs_dilation": (2, 2)}),  # Transposed convolution.
        (x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), ("NCHW", "OIHW", "NCHW"), {}),
    ]
    for lhs, rhs, numbers, fields in cases:
        args = (lhs, rhs, (1, 1), ((1, 1), (1, 1)))
        chex.assert_trees_all_equal(
            patch_conv(*args, dimension_numbers=numbers, **fields),
            lax.conv_general_dilated(*args, dimension_numbers=numbers, **fields),
        )


@pytest.mark.parametrize(
    ("lhs_shape", "rhs_shape", "expected"),
    [
        ((64, 16, 16, 32), (3, 3, 32, 32), "lax"),  # Thin, 18 MiB of patches: XLA is faster.
        ((64, 8, 8, 32), (3, 3, 32, 32), "patches"),  # Smaller.
        ((64, 28, 28, 32), (3, 3, 32, 32), "patches"),  # Larger.
        ((64, 16, 16, 32), (3, 3, 32, 64), "patches"),  # Wider.
        ((64, 16, 16, 1), (3, 3, 1, 32), "patches"),  # One input channel.
        ((64, 32, 32, 128), (1, 1, 128, 32), "patches"),  # 1x1: a matmul either way.
        ((4096, 2, 2, 32), (3, 3, 32, 32), "patches"),  # The window is larger than the output.
    ],
)
def test_patch_conv_leaves_a_band_of_thin_layers_to_lax(lhs_shape, rhs_shape, expected):
    def conv(x, w):
        return patch_conv(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    args = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in (lhs_shape, rhs_shape)]
    primitives = {eqn.primitive.name for eqn in jax.make_jaxpr(conv)(*args).eqns}
    assert ("conv_general_dilated" in primitives) == (expected == "lax")


@pytest.mark.parametrize("shape", [(3, 7, 6, 5), (2, 9, 4), (2, 5, 4, 3, 2)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_by_reshape_matches_flax_values_and_gradients(shape, kind):
    """CPU pooling (layers._pool_by_reshape) against nn.max_pool / nn.avg_pool, odd sizes too."""
    from flax import linen as nn

    from jaxdl.models.layers import _pool_by_reshape

    x = jnp.asarray(_normal(shape, seed=4))
    window = tuple(2 if size >= 2 else 1 for size in shape[1:-1])
    reference = {"max": nn.max_pool, "avg": nn.avg_pool}[kind]

    def loss(pool, x):
        return jnp.sum(jnp.sin(pool(x)))

    ours = functools.partial(_pool_by_reshape, window=window, kind=kind)
    theirs = functools.partial(reference, window_shape=window, strides=window)
    # atol: an average near zero differs from Flax's (another summation order) in the last bit.
    chex.assert_trees_all_close(ours(x), theirs(x), rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(
        jax.grad(functools.partial(loss, ours))(x),
        jax.grad(functools.partial(loss, theirs))(x),
        rtol=1e-6,
        atol=1e-7,
    )
