"""Dynamic loss scaling: unscaled updates, skipped overflow steps, backoff and growth of the scale."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.loss_scale import (
    MAX_SCALE,
    MIN_SCALE,
    LossScaleState,
    current_scale,
    dynamic_loss_scale,
    overflow_count,
    step_was_skipped,
)


def _params():
    return {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, -0.2])}


def _grads(scale):
    return {
        "w": jnp.array([[0.3, -0.1], [0.2, 0.05]]) * scale,
        "b": jnp.array([1e-3, -2e-3]) * scale,
    }


def test_finite_steps_match_inner_and_grow_after_the_interval():
    inner = optax.adam(1e-2)
    tx = dynamic_loss_scale(inner, initial_scale=1024.0, growth_interval=3)
    params = _params()
    state = tx.init(params)
    ref_params, ref_state = params, inner.init(params)
    update = jax.jit(tx.update)
    for step in range(1, 5):
        scale = float(current_scale(state))
        updates, new_state = update(_grads(scale), state, params)
        ref_updates, ref_state = inner.update(_grads(1.0), ref_state, ref_params)
        chex.assert_trees_all_close(updates, ref_updates, atol=1e-6, rtol=1e-6)
        chex.assert_trees_all_close(new_state.inner, ref_state, atol=1e-6, rtol=1e-6)
        assert not bool(step_was_skipped(state, new_state))
        state = new_state
        params = optax.apply_updates(params, updates)
        ref_params = optax.apply_updates(ref_params, ref_updates)
        # Doubles on the 3rd finite step, then counts again from 0.
        assert float(current_scale(state)) == (2048.0 if step >= 3 else 1024.0)
        assert int(state.good_steps) == step % 3
    assert int(overflow_count(state)) == 0


@pytest.mark.parametrize("bad", [jnp.inf, -jnp.inf, jnp.nan])
def test_overflow_skips_the_step_and_backs_off(bad):
    tx = dynamic_loss_scale(optax.adam(1e-2), initial_scale=1024.0, growth_interval=3)
    params = _params()
    state = tx.init(params)
    update = jax.jit(tx.update)
    updates, state = update(_grads(1024.0), state, params)
    params = optax.apply_updates(params, updates)
    assert int(state.good_steps) == 1

    grads = _grads(1024.0)
    grads["w"] = grads["w"].at[0, 1].set(bad)
    updates, new_state = update(grads, state, params)
    new_params = optax.apply_updates(params, updates)
    chex.assert_trees_all_equal(new_params, params)
    chex.assert_trees_all_equal(new_state.inner, state.inner)  # adam's count, mu and nu.
    assert int(new_state.inner[0].count) == 1
    assert float(current_scale(new_state)) == 512.0
    assert int(overflow_count(new_state)) == 1
    assert int(new_state.good_steps) == 0
    assert bool(step_was_skipped(state, new_state))
    chex.assert_tree_all_finite(updates)

    # The next finite step goes through with the new scale.
    state = new_state
    updates, new_state = update(_grads(512.0), state, params)
    assert not bool(step_was_skipped(state, new_state))
    assert int(new_state.inner[0].count) == 2
    assert int(new_state.good_steps) == 1
    assert float(current_scale(new_state)) == 512.0
    assert int(overflow_count(new_state)) == 1
    assert not jnp.allclose(optax.apply_updates(params, updates)["w"], params["w"])


def test_scale_stays_finite_at_the_cap():
    tx = dynamic_loss_scale(optax.sgd(0.1), initial_scale=MAX_SCALE, growth_interval=1)
    params = _params()
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update(_grads(float(current_scale(state))), state, params)
    assert float(current_scale(state)) == MAX_SCALE
    # An initial scale above the cap is not lowered by growth.
    tx = dynamic_loss_scale(optax.sgd(0.1), initial_scale=2.0**30, growth_interval=1)
    state = tx.init(params)
    _, state = tx.update(_grads(2.0**30), state, params)
    assert float(current_scale(state)) == 2.0**30


def test_scale_backs_off_to_a_floor_not_to_zero():
    tx = dynamic_loss_scale(optax.sgd(0.1), initial_scale=2.0**-20)
    params = _params()
    state = tx.init(params)
    nan_grads = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), params)
    for _ in range(10):
        _, state = tx.update(nan_grads, state, params)
    assert float(current_scale(state)) == MIN_SCALE > 0
    assert int(overflow_count(state)) == 10


def test_state_is_a_pytree_of_arrays_and_found_when_nested():
    tx = dynamic_loss_scale(optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3)))
    state = tx.init(_params())
    assert isinstance(state, LossScaleState)
    leaves = jax.tree.leaves(state)
    assert leaves and all(isinstance(x, jax.Array) for x in leaves)
    assert state.scale.dtype == jnp.float32 and state.scale.shape == ()
    assert state.good_steps.dtype == jnp.int32 and state.skipped.dtype == jnp.int32
    # Round-trips through flatten/unflatten, as a checkpoint restore does.
    restored = jax.tree.unflatten(jax.tree.structure(state), [np.asarray(x) for x in leaves])
    assert float(current_scale(restored)) == 2.0**15
    # Found inside a container too (e.g. a wrapper that nests the optimizer state).
    assert float(current_scale({"opt": state})) == 2.0**15
    with pytest.raises(ValueError, match="LossScaleState"):
        current_scale(optax.adam(1e-3).init(_params()))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initial_scale": 0.0}, "initial_scale"),
        ({"initial_scale": -1.0}, "initial_scale"),
        ({"initial_scale": float("inf")}, "initial_scale"),
        ({"initial_scale": float("nan")}, "initial_scale"),
        ({"growth_interval": 0}, "growth_interval"),
        ({"growth_interval": 2.5}, "growth_interval"),
        ({"growth_interval": True}, "growth_interval"),
        ({"growth_interval": 2**31}, "growth_interval"),
        ({"growth": 1.0}, "growth"),
        ({"growth": float("inf")}, "growth"),
        ({"backoff": 0.0}, "backoff"),
        ({"backoff": 1.0}, "backoff"),
        ({"backoff": float("nan")}, "backoff"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        dynamic_loss_scale(optax.sgd(0.1), **kwargs)


def test_float16_model_backs_off_then_learns():
    model = nn.Dense(4, dtype=jnp.float16, param_dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(0), (32, 8))
    y = x @ jax.random.normal(jax.random.key(1), (8, 4))
    params = model.init(jax.random.key(2), x)
    tx = dynamic_loss_scale(optax.adam(3e-2), initial_scale=2.0**30, growth_interval=1000)
    opt_state = tx.init(params)

    def loss_fn(p):
        out = model.apply(p, x).astype(jnp.float32)
        return jnp.mean((out - y) ** 2)

    @jax.jit
    def step(params, opt_state):
        scale = current_scale(opt_state)
        loss, grads = jax.value_and_grad(lambda p: loss_fn(p) * scale)(params)
        updates, new_state = tx.update(grads, opt_state, params)
        return (
            optax.apply_updates(params, updates),
            new_state,
            loss / scale,
            step_was_skipped(opt_state, new_state),
        )

    skipped, losses = [], []
    for _ in range(80):
        params, opt_state, loss, was_skipped = step(params, opt_state)
        skipped.append(bool(was_skipped))
        losses.append(float(loss))

    # 2**30 overflows float16's cotangents: the first steps are skipped until the scale backs off.
    assert skipped[0]
    n_skipped = int(overflow_count(opt_state))
    assert 1 <= n_skipped == sum(skipped) < 30
    assert skipped[:n_skipped] == [True] * n_skipped and not any(skipped[n_skipped:])
    assert float(current_scale(opt_state)) == 2.0**30 * 0.5**n_skipped
    # Skipped steps left the parameters alone, so the loss did not move before the first update.
    assert len(set(losses[: n_skipped + 1])) == 1
    assert len(losses) - n_skipped >= 50
    assert losses[-1] < 0.5 * losses[n_skipped]
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.float32
    chex.assert_tree_all_finite(params)
