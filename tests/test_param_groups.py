"""Optimizer parameter groups: frozen groups stay bit-identical, learning-rate multipliers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from jaxdl import config as config_lib
from jaxdl import optim
from jaxdl.errors import UserInputError
from jaxdl.models import build_model


def _mlp_params() -> dict:
    """Boxed MLP parameters (4 -> 8 -> 3 classes): what Task.init_state gives the optimizer."""
    config = config_lib.base_config()
    config.model.hidden_sizes = (8,)
    model = build_model(config.model, num_classes=3)
    init = functools.partial(model.init, train=False)
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.ones((1, 4)))
    # Random values from NumPy: JAX's random bits take seconds to compile on CPU.
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes["params"])


def _optimizer(name="sgd", frozen=(), multipliers=(), **fields):
    config = config_lib.base_config()
    config.optimizer.name = name
    config.optimizer.learning_rate = 0.1
    config.optimizer.frozen = frozen
    config.optimizer.lr_multipliers = multipliers
    config.optimizer.update(fields)
    config.schedule.name = "constant"
    return optim.make_optimizer(config.optimizer, config.schedule, 100)[0]


def _steps(tx, boxed, count=3):
    """`count` updates with fixed pseudo-random gradients, as the train step applies them."""
    state = meta.unbox(tx.init(boxed))
    params = meta.unbox(boxed)
    rng = np.random.default_rng(0)
    update = jax.jit(tx.update)
    for _ in range(count):
        grads = jax.tree.map(lambda p: rng.standard_normal(p.shape, np.float32), params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _bits(tree) -> dict[str, bytes]:
    paths, leaves, _ = optim.param_paths(tree)
    return {path: np.asarray(leaf).tobytes() for path, leaf in zip(paths, leaves, strict=True)}


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_frozen_group_is_bit_identical_and_the_rest_trains(name):
    boxed = _mlp_params()
    start = _bits(meta.unbox(boxed))
    tuned = _bits(_steps(_optimizer(name, ("head",), weight_decay=0.1), boxed))
    assert {path for path in start if start[path] == tuned[path]} == {
        "Dense_1/bias",
        "Dense_1/kernel",
    }


def test_multiplier_zero_is_frozen_and_multipliers_scale_the_update():
    boxed = _mlp_params()
    plain = _steps(_optimizer(), boxed, 1)
    assert _bits(_steps(_optimizer(multipliers=("head=0",)), boxed, 1)) == _bits(
        _steps(_optimizer(frozen=("head",)), boxed, 1)
    )
    scaled = _steps(_optimizer(multipliers=("backbone=0.25", "Dense_1/bias=2")), boxed, 1)
    start = meta.unbox(boxed)
    for module, leaf, factor in [("Dense_0", "kernel", 0.25), ("Dense_1", "bias", 2.0)]:
        update = scaled[module][leaf] - start[module][leaf]
        reference = plain[module][leaf] - start[module][leaf]
        np.testing.assert_allclose(update, factor * reference, rtol=1e-5, atol=1e-7)
    assert _bits(scaled)["Dense_1/kernel"] == _bits(plain)["Dense_1/kernel"]


def test_no_groups_is_the_plain_optimizer():
    boxed = _mlp_params()
    for name in config_lib.OPTIMIZERS:
        grouped = jax.tree.structure(_optimizer(name, weight_decay=0.1).init(boxed))
        assert "PartitionState" not in str(grouped)


@pytest.mark.parametrize(
    ("frozen", "multipliers", "match"),
    [
        (
            ("encoder/.*",),
            (),
            r"optimizer.frozen: group 'encoder/.\*' matches no .*Dense_0, Dense_1",
        ),
        (("backbone",), ("Dense_0/kernel=0.1",), "'Dense_0/kernel' is in two groups"),
        (("head", "head"), (), "'Dense_1/bias' is in two groups"),
        ((), ("head",), "'GROUP=FACTOR'"),
        ((), ("head=-1",), "finite factor >= 0"),
        ((), ("head=nan",), "finite factor >= 0"),
        ((), ("=1",), "'GROUP=FACTOR'"),
        (("Dense_[",), (), "not a valid regular expression"),
    ],
)
def test_group_errors(frozen, multipliers, match):
    with pytest.raises(UserInputError, match=match):
        _optimizer("adamw", frozen, multipliers).init(_mlp_params())


def test_head_group_needs_the_logical_names():
    tx = _optimizer(frozen=("head",))
    with pytest.raises(ValueError, match="logical axis names"):
        tx.init(meta.unbox(_mlp_params()))
    # A regular expression needs none.
    _optimizer(frozen=("Dense_1/.*",)).init(meta.unbox(_mlp_params()))
