"""Dynamic loss scaling for float16 mixed-precision training, as an optax wrapper.

Parameters and optimizer state stay float32 while the model computes in float16. Small float16
gradients underflow to zero, so the caller multiplies the loss by `current_scale(opt_state)` before
differentiating; the wrapper divides the gradients by the same scale. A step whose gradients are
not all finite (float16 overflow) is skipped: zero updates, the inner optimizer state (step counts
included) unchanged, the scale multiplied by `backoff`. After `growth_interval` finite steps in a
row the scale is multiplied by `growth`. Usage::

    tx = dynamic_loss_scale(optax.adam(1e-3))  # outermost: it must see the raw scaled gradients
    grads = jax.grad(lambda p: loss_fn(p) * current_scale(opt_state))(params)
    updates, opt_state = tx.update(grads, opt_state, params)

The scale and counters live in the optimizer state, so checkpoints carry them with no change to the
train-state layout. `optax.apply_if_finite` also skips non-finite steps but does not scale.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# The scale is a float32 scalar. Growing it without bound would reach inf after ~128 doublings;
# an inf scale makes every scaled loss inf/nan, every step is skipped and inf * backoff stays inf,
# so training never recovers. 2**24 is far past any useful scale for float16 (it lifts float16's
# smallest subnormal, 2**-24, to 1) and keeps 1 / scale a normal float32.
MAX_SCALE = 2.0**24
# Repeated backoff (e.g. a model that is nan for reasons scaling cannot fix) would otherwise
# underflow the scale to 0, after which grads / scale is 0 / 0 = nan forever and growth from 0
# stays 0. Floor it at the reciprocal of the cap.
MIN_SCALE = 2.0**-24


class LossScaleState(NamedTuple):
    """State of `dynamic_loss_scale`: the inner optimizer's state, the scale and its counters."""

    inner: optax.OptState
    scale: jax.Array  # float32 scalar
    good_steps: jax.Array  # int32: finite steps since the last change of the scale
    skipped: jax.Array  # int32: total skipped (overflow) steps


def _validate(initial_scale: float, growth_interval: int, growth: float, backoff: float) -> None:
    if not (math.isfinite(initial_scale) and initial_scale > 0):
        raise ValueError(f"initial_scale must be finite and > 0, got {initial_scale!r}")
    if (
        isinstance(growth_interval, bool)
        or not isinstance(growth_interval, int)
        or not 1 <= growth_interval <= jnp.iinfo(jnp.int32).max
    ):
        raise ValueError(
            f"growth_interval must be an integer in [1, 2**31 - 1], got {growth_interval!r}"
        )
    if not (math.isfinite(growth) and growth > 1):
        raise ValueError(f"growth must be finite and > 1, got {growth!r}")
    if not (math.isfinite(backoff) and 0 < backoff < 1):
        raise ValueError(f"backoff must be in (0, 1), got {backoff!r}")


def dynamic_loss_scale(
    inner: optax.GradientTransformation,
    initial_scale: float = 2.0**15,
    growth_interval: int = 2000,
    growth: float = 2.0,
    backoff: float = 0.5,
) -> optax.GradientTransformationExtraArgs:
    """Wrap `inner` with dynamic loss scaling; apply it outermost.

    `update(scaled_grads, state, params)` expects gradients of `loss * current_scale(state)` and
    returns `(updates, new_state)`; extra keyword arguments are passed on to `inner`.
    """
    _validate(initial_scale, growth_interval, growth, backoff)
    inner = optax.with_extra_args_support(inner)

    def init(params: optax.Params) -> LossScaleState:
        return LossScaleState(
            inner=inner.init(params),
            scale=jnp.asarray(initial_scale, jnp.float32),
            good_steps=jnp.zeros([], jnp.int32),
            skipped=jnp.zeros([], jnp.int32),
        )

    def update(
        updates: optax.Updates,
        state: LossScaleState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, LossScaleState]:
        scale = state.scale

        def unscale(g: jax.Array) -> jax.Array:
            # In at least float32: a float16 gradient / scale would underflow all over again.
            g = g.astype(jnp.promote_types(g.dtype, jnp.float32))
            return g / scale.astype(g.dtype)

        grads = jax.tree.map(unscale, updates)
        leaves = jax.tree.leaves(grads)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in leaves]))

        new_updates, new_inner = inner.update(grads, state.inner, params, **extra_args)
        # Select, never multiply by a 0/1 mask: 0 * inf is nan. Keeping the old inner state also
        # keeps optax's step counts (schedules, bias correction) where they were.
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
        new_inner = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_inner, state.inner)

        good = state.good_steps + 1
        grow = finite & (good >= growth_interval)
        # Never shrink on growth (initial_scale may exceed the cap) and never raise on backoff.
        grown = jnp.maximum(scale, jnp.minimum(scale * growth, MAX_SCALE))
        backed_off = jnp.maximum(scale * backoff, jnp.minimum(scale, MIN_SCALE))
        new_scale = jnp.where(finite, jnp.where(grow, grown, scale), backed_off)
        new_good = jnp.where(finite & ~grow, good, jnp.zeros_like(good))
        new_skipped = jnp.where(finite, state.skipped, optax.safe_increment(state.skipped))
        return new_updates, LossScaleState(new_inner, new_scale, new_good, new_skipped)

    return optax.GradientTransformationExtraArgs(init, update)


def _find(opt_state: optax.OptState) -> LossScaleState:
    if isinstance(opt_state, LossScaleState):
        return opt_state
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, LossScaleState))
        if isinstance(s, LossScaleState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"opt_state holds {len(found)} LossScaleState(s); expected exactly one "
            "(wrap the optimizer once with dynamic_loss_scale, outermost)"
        )
    return found[0]


def current_scale(opt_state: optax.OptState) -> jax.Array:
    """The float32 scale to multiply the loss by for the next step."""
    return _find(opt_state).scale


def overflow_count(opt_state: optax.OptState) -> jax.Array:
    """Total steps skipped because their gradients were not finite."""
    return _find(opt_state).skipped


def step_was_skipped(old_state: optax.OptState, new_state: optax.OptState) -> jax.Array:
    """Whether the update from `old_state` to `new_state` was skipped (bool scalar).

    Compares the skip counters, so it misses a skip only once the int32 counter has saturated.
    """
    return _find(new_state).skipped != _find(old_state).skipped
