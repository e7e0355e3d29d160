"""Position encodings of the Transformer library: sinusoidal tables and rotary attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models.transformer import MultiHeadAttention, apply_rotary, sinusoidal_positions


def test_sinusoidal_table_follows_the_formula():
    table = np.asarray(sinusoidal_positions(5, 8))
    assert table.shape == (5, 8)
    for pos in range(5):
        for i in range(4):
            angle = pos / 10_000 ** (2 * i / 8)
            assert table[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-6)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(3, 5)


def test_rotary_keeps_norms_and_scores_depend_on_offsets_only():
    q = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 2, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 2, 8))

    def score(i, j):
        qi = apply_rotary(q, jnp.array([i]))
        kj = apply_rotary(k, jnp.array([j]))
        return jnp.einsum("bthd,bthd->h", qi, kj)

    np.testing.assert_allclose(score(3, 1), score(10, 8), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(score(0, 0), jnp.einsum("bthd,bthd->h", q, k), rtol=1e-6)
    assert not np.allclose(score(3, 1), score(1, 3))
    rotated = apply_rotary(q, jnp.array([7]))
    np.testing.assert_allclose(
        jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(q, axis=-1), rtol=1e-6
    )


def test_rotary_attention_is_shift_invariant_and_default_is_unchanged():
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 16))
    plain = MultiHeadAttention(num_heads=2)
    rotary = MultiHeadAttention(num_heads=2, rotary=True)
    variables = plain.init(jax.random.PRNGKey(3), x, train=False)
    # Same parameters: rotary adds no weights.
    assert jax.tree.structure(variables) == jax.tree.structure(
        rotary.init(jax.random.PRNGKey(3), x, train=False)
    )
    out = rotary.apply(variables, x, causal=True, train=False)
    shifted = rotary.apply(variables, x, causal=True, positions=jnp.arange(6) + 100, train=False)
    np.testing.assert_allclose(out, shifted, rtol=1e-4, atol=1e-4)
    assert not np.allclose(out, plain.apply(variables, x, causal=True, train=False), atol=1e-3)


def test_rotary_blocks_build_through_the_encoder():
    from jaxdl.models.transformer import Encoder

    x = jax.random.normal(jax.random.PRNGKey(4), (2, 5, 16))
    block = {"num_heads": 2, "mlp_dim": 32, "rotary": True}
    encoder = Encoder(2, block)
    variables = encoder.init(jax.random.PRNGKey(5), x, causal=True, train=False)
    out = encoder.apply(variables, x, causal=True, train=False)
    plain = Encoder(2, {**block, "rotary": False}).apply(variables, x, causal=True, train=False)
    assert out.shape == x.shape and not np.allclose(out, plain, atol=1e-3)
