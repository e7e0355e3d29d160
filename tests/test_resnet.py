"""ResNet presets: published parameter counts, output shapes, and the block options."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from jaxdl.errors import UserInputError
from jaxdl.models import ResNet
from jaxdl.models.resnet import CIFAR_DEPTHS, IMAGENET_DEPTHS, _Block


def _abstract(model, shape):
    """(logits, params) as shapes only: tracing, not compiling, keeps the presets fast."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = meta.unbox(
        jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)
    )
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    return logits, variables["params"]


def _count(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


# torchvision's counts for the ImageNet family (1000 classes); He et al. 2015, table 6, for the
# CIFAR family (10 classes, option A shortcuts): 0.27M, 0.85M, 1.7M.
PUBLISHED = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
    20: 269_722,
    56: 853_018,
    110: 1_727_962,
}


@pytest.mark.parametrize("depth", sorted(PUBLISHED))
def test_parameter_counts_equal_the_published_ones(depth):
    classes = 1000 if depth in IMAGENET_DEPTHS else 10
    _, params = _abstract(ResNet(classes, depth=depth), (1, 32, 32, 3))
    assert _count(params) == PUBLISHED[depth]


@pytest.mark.parametrize("depth", sorted({*IMAGENET_DEPTHS, *CIFAR_DEPTHS}))
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_every_preset_gives_logits_on_small_images(depth, stem):
    logits, _ = _abstract(ResNet(7, depth=depth, stem=stem), (2, 8, 8, 1))
    chex.assert_shape(logits, (2, 7))
    assert logits.dtype == jnp.float32


def test_preact_width_and_cifar_stem_change_the_network_as_documented():
    _, base = _abstract(ResNet(10, depth=20), (1, 8, 8, 1))
    _, half = _abstract(ResNet(10, depth=20, width=0.5), (1, 8, 8, 1))
    assert base["Conv_0"]["kernel"].shape == (3, 3, 1, 16)
    assert half["Conv_0"]["kernel"].shape == (3, 3, 1, 8)
    _, cifar18 = _abstract(ResNet(10, depth=18, stem="cifar"), (1, 8, 8, 3))
    assert cifar18["Conv_0"]["kernel"].shape == (3, 3, 3, 64)
    _, preact = _abstract(ResNet(10, depth=20, preact=True), (1, 8, 8, 1))
    # Pre-activation: no norm right after the stem, one before the head instead; same count.
    assert _count(preact) == _count(base)


@pytest.mark.parametrize("preact", [False, True])
def test_zero_initialised_branches_make_every_block_start_as_the_identity(preact):
    block = _Block(
        16,
        strides=1,
        kind="basic",
        projection=False,
        preact=preact,
        zero_init_last=True,
        dtype=jnp.float32,
        batch_axis_name=None,
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 16))
    variables = meta.unbox(block.init(jax.random.PRNGKey(0), x, train=False))
    y = block.apply(variables, x, train=False)
    np.testing.assert_allclose(y, x if preact else jax.nn.relu(x), atol=1e-6)


def test_bottleneck_with_projection_changes_width_and_resolution():
    block = _Block(
        8,
        strides=2,
        kind="bottleneck",
        projection=True,
        preact=False,
        zero_init_last=False,
        dtype=jnp.float32,
        batch_axis_name=None,
    )
    x = jnp.ones((2, 8, 8, 16))
    variables = meta.unbox(block.init(jax.random.PRNGKey(0), x, train=False))
    chex.assert_shape(block.apply(variables, x, train=False), (2, 4, 4, 32))


def test_bad_depth_and_bad_input_say_what_to_use():
    with pytest.raises(UserInputError, match=r"model.depth=19 is not a ResNet preset.*18, 20"):
        ResNet(10, depth=19)
    with pytest.raises(UserInputError, match=r"model.width=0 must be in"):
        ResNet(10, width=0)
    with pytest.raises(UserInputError, match=r"model 'resnet' takes images"):
        _abstract(ResNet(10, depth=20), (2, 64))
