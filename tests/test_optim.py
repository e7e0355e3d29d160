"""The optimizer and schedule factory: every option builds, steps, and does what its name says."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import config as config_lib
from jaxdl import optim
from jaxdl.errors import UserInputError

PARAMS = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))}}


def _configs(name, **optimizer_fields):
    config = config_lib.base_config()
    config.optimizer.name = name
    config.optimizer.update(optimizer_fields)
    config.train.num_steps = 100
    return config


def _one_step(tx, params=PARAMS, grad_value=1.0):
    grads = jax.tree.map(lambda p: jnp.full_like(p, grad_value), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)


@pytest.mark.parametrize("name", config_lib.OPTIMIZERS)
def test_every_optimizer_descends(name):
    config = _configs(name, learning_rate=0.1)
    config.schedule.name = "constant"
    tx, _ = optim.make_optimizer(config.optimizer, config.schedule, config.train.num_steps)
    new = _one_step(tx)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, PARAMS)
    assert bool(jnp.all(new["dense"]["kernel"] < PARAMS["dense"]["kernel"]))


def test_sgd_step_is_lr_times_grad():
    config = _configs("sgd", learning_rate=0.1)
    config.schedule.name = "constant"
    tx, _ = optim.make_optimizer(config.optimizer, config.schedule, 100)
    new = _one_step(tx, grad_value=2.0)
    np.testing.assert_allclose(new["dense"]["kernel"], 1.0 - 0.2, rtol=1e-6)


def test_nesterov_differs_from_momentum_on_second_step():
    def two_steps(name):
        config = _configs(name, learning_rate=0.1, momentum=0.9)
        config.schedule.name = "constant"
        tx, _ = optim.make_optimizer(config.optimizer, config.schedule, 100)
        params, state = PARAMS, tx.init(PARAMS)
        for _ in range(2):
            grads = jax.tree.map(jnp.ones_like, params)
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params["dense"]["kernel"][0, 0]

    assert float(two_steps("momentum")) != float(two_steps("nesterov"))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_skips_biases_by_default(name):
    config = _configs(name, learning_rate=0.1, weight_decay=0.5)
    config.schedule.name = "constant"
    tx, _ = optim.make_optimizer(config.optimizer, config.schedule, 100)
    decayed = _one_step(tx, grad_value=0.0)
    assert float(decayed["dense"]["kernel"][0, 0]) < 1.0
    assert float(decayed["dense"]["bias"][0]) == 1.0
    config.optimizer.decay_all_params = True
    tx, _ = optim.make_optimizer(config.optimizer, config.schedule, 100)
    assert float(_one_step(tx, grad_value=0.0)["dense"]["bias"][0]) < 1.0


def test_gradient_clipping_bounds_the_update():
    config = _configs("sgd", learning_rate=1.0, grad_clip_norm=1.0)
    config.schedule.name = "constant"
    tx, _ = optim.make_optimizer(config.optimizer, config.schedule, 100)
    new = _one_step(tx, grad_value=100.0)
    delta = jax.tree.map(lambda a, b: a - b, PARAMS, new)
    np.testing.assert_allclose(optax.tree.norm(delta), 1.0, rtol=1e-5)


def test_warmup_cosine_schedule_shape():
    config = config_lib.base_config()
    config.schedule.update(name="warmup_cosine", warmup_steps=10, end_factor=0.1)
    lr = optim.make_schedule(config.schedule, 1.0, num_steps=110)
    assert float(lr(0)) == 0.0
    np.testing.assert_allclose(lr(5), 0.5, rtol=1e-6)
    np.testing.assert_allclose(lr(10), 1.0, rtol=1e-6)
    np.testing.assert_allclose(lr(110), 0.1, rtol=1e-5)
    assert float(lr(60)) < 1.0


def test_step_schedule_decays_at_fractions():
    config = config_lib.base_config()
    config.schedule.update(name="step", warmup_steps=0, boundaries=(0.5, 0.75), decay_factor=0.1)
    lr = optim.make_schedule(config.schedule, 1.0, num_steps=100)
    np.testing.assert_allclose([lr(49), lr(51), lr(76)], [1.0, 0.1, 0.01], rtol=1e-6)


def test_constant_schedule_with_warmup():
    config = config_lib.base_config()
    config.schedule.update(name="constant", warmup_steps=4)
    lr = optim.make_schedule(config.schedule, 2.0, num_steps=100)
    np.testing.assert_allclose([lr(0), lr(2), lr(4), lr(90)], [0.0, 1.0, 2.0, 2.0], rtol=1e-6)


def test_unknown_names_are_user_errors():
    config = _configs("rmsprop")
    with pytest.raises(UserInputError, match=r"optimizer\.name"):
        optim.make_optimizer(config.optimizer, config.schedule, 100)
    config = _configs("sgd")
    config.schedule.name = "linear"
    with pytest.raises(UserInputError, match=r"schedule\.name"):
        optim.make_optimizer(config.optimizer, config.schedule, 100)
