"""Vision Transformer presets and the shared Transformer blocks."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from jaxdl.errors import UserInputError
from jaxdl.models import VisionTransformer
from jaxdl.models.transformer import Encoder, MultiHeadAttention, TransformerBlock
from jaxdl.models.vit import interpolate_position_embeddings


def _init(model, shape, **kwargs):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    init = functools.partial(model.init, train=False, **kwargs)
    return meta.unbox(jax.eval_shape(init, jax.random.PRNGKey(0), x))


def _count(variables) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


# Published sizes at 224 px, 16x16 patches, 1000 classes (ViT-B/16: Dosovitskiy et al.;
# Ti and S as in DeiT / timm).
@pytest.mark.parametrize(
    ("variant", "count"),
    [("Ti", 5_717_416), ("S", 22_050_664), ("B", 86_567_656), ("L", 304_326_632)],
)
def test_parameter_counts_equal_the_published_ones(variant, count):
    model = VisionTransformer(1000, variant=variant, patch_size=16)
    assert _count(_init(model, (1, 224, 224, 3))) == count


@pytest.mark.parametrize("variant", ["Ti", "S", "B", "L"])
@pytest.mark.parametrize(("patch", "pool"), [(8, "cls"), (4, "gap")])
def test_every_preset_gives_logits_on_small_images(variant, patch, pool):
    model = VisionTransformer(7, variant=variant, patch_size=patch, pool=pool)
    x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    variables = _init(model, x.shape)
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    chex.assert_shape(logits, (2, 7))
    tokens = (16 // patch) ** 2 + (pool == "cls")
    chex.assert_shape(
        variables["params"]["position_embedding"], (1, tokens, VARIANTS_WIDTH[variant])
    )


VARIANTS_WIDTH = {"Ti": 192, "S": 384, "B": 768, "L": 1024}


def _small(**fields):
    sizes = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "mlp_dim": 64, "patch_size": 2}
    return VisionTransformer(10, **{**sizes, **fields})


def test_attention_weights_are_read_out_on_request():
    model = _small()
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 1))
    variables = meta.unbox(model.init(jax.random.PRNGKey(0), x, train=False))
    logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    plain = model.apply(variables, x, train=False)
    np.testing.assert_allclose(logits, plain, rtol=1e-6)  # Reading them changes nothing.
    (weights,) = state["intermediates"]["encoder"]["block_1"]["MultiHeadAttention_0"][
        "attention_weights"
    ]
    chex.assert_shape(weights, (2, 4, 17, 17))  # batch, heads, cls + 16 patches twice.
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_explicit_weights_match_the_fused_attention_with_causal_mask_and_grouped_heads():
    attention = MultiHeadAttention(num_heads=4, num_kv_heads=2)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 16))
    variables = meta.unbox(attention.init(jax.random.PRNGKey(0), x, causal=True, train=False))
    out, state = attention.apply(variables, x, causal=True, train=False, mutable=["intermediates"])
    (weights,) = state["intermediates"]["attention_weights"]
    assert float(jnp.abs(jnp.triu(weights, k=1)).max()) == 0.0  # Nothing from the future.
    # Recompute the output from the weights: the same as the fused kernel's.
    q_kernel = variables["params"]["DenseGeneral_2"]
    v = jnp.einsum("bsd,dhk->bshk", x, q_kernel["kernel"]) + q_kernel["bias"]
    v = jnp.repeat(v, 2, axis=2)
    mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    out_kernel = variables["params"]["DenseGeneral_3"]
    expected = jnp.einsum("bqhd,hde->bqe", mixed, out_kernel["kernel"]) + out_kernel["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "fields",
    [
        {"pre_norm": False},
        {"norm": "rmsnorm", "mlp": "swiglu"},
        {"num_kv_heads": 1},
    ],
)
def test_block_options_keep_the_shape(fields):
    block = TransformerBlock(num_heads=4, mlp_dim=32, **fields)
    x = jnp.ones((2, 3, 16))
    variables = meta.unbox(block.init(jax.random.PRNGKey(0), x))
    chex.assert_shape(block.apply(variables, x), (2, 3, 16))


def test_remat_recomputes_the_same_values_and_gradients():
    block = {"num_heads": 2, "mlp_dim": 16}
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 8))
    plain, remat = Encoder(2, block), Encoder(2, block, remat=True)
    variables = meta.unbox(plain.init(jax.random.PRNGKey(0), x, train=False))

    def loss(model, params):
        return jnp.sum(model.apply({"params": params}, x, train=False) ** 2)

    # Jitted: op by op, the two backward passes took about 20 s.
    grads = [
        jax.jit(jax.grad(functools.partial(loss, m)))(variables["params"]) for m in (plain, remat)
    ]
    chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_position_embeddings_interpolate_to_another_image_size():
    grid = jnp.arange(16.0).reshape(1, 4, 4, 1) * jnp.ones((1, 1, 1, 3))
    embeddings = jnp.concatenate([jnp.full((1, 1, 3), -7.0), grid.reshape(1, 16, 3)], axis=1)
    same = interpolate_position_embeddings(embeddings, 17, has_cls=True)
    np.testing.assert_allclose(same, embeddings)
    larger = interpolate_position_embeddings(embeddings, 1 + 64, has_cls=True)
    chex.assert_shape(larger, (1, 65, 3))
    np.testing.assert_allclose(larger[0, 0], -7.0)  # The class token's is kept.
    assert float(larger[0, 1:, 0].min()) >= 0.0 and float(larger[0, 1:, 0].max()) <= 15.0
    with pytest.raises(UserInputError, match="only square patch grids"):
        interpolate_position_embeddings(embeddings, 1 + 12, has_cls=True)


def test_bad_fields_and_inputs_say_what_to_change():
    with pytest.raises(UserInputError, match=r"model.variant='XL'"):
        VisionTransformer(10, variant="XL")
    with pytest.raises(
        UserInputError, match=r"hidden_size=30 is not divisible by model.num_heads=4"
    ):
        VisionTransformer(10, hidden_size=30, num_heads=4)
    with pytest.raises(UserInputError, match=r"patch_size=3 does not divide the 8x8 images"):
        _init(_small(patch_size=3), (1, 8, 8, 1))
