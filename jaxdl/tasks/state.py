"""The train state of a single-network task. Tasks with more networks define their own pytree."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Everything a step reads and writes; a pytree, so the engine can shard and checkpoint it whole.

    `rng` is the run's base key and never changes: each step derives its own key as
    `fold_in(rng, step)`, so a resumed run draws exactly the keys an uninterrupted one would.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any  # Non-parameter collections, e.g. {'batch_stats': ...}; {} when none.
    rng: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def from_variables(
        cls, variables: Any, rng: jax.Array, apply_fn: Callable, tx: optax.GradientTransformation
    ) -> "TrainState":
        """Step 0 from a model's `init` variables: their params, a fresh optimizer state, and the
        other collections (e.g. batch statistics) as `model_state`."""
        model_state = dict(variables)
        params = model_state.pop("params")
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            model_state=model_state,
            rng=rng,
            apply_fn=apply_fn,
            tx=tx,
        )

    def step_rng(self) -> jax.Array:
        return jax.random.fold_in(self.rng, self.step)

    def apply_gradients(self, grads: Any, **updates: Any) -> "TrainState":
        param_updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, param_updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **updates)


def apply_grads_with_metrics(
    state: TrainState, grads: Any, metrics: dict[str, jax.Array], learning_rate: optax.Schedule
) -> tuple[TrainState, dict[str, jax.Array]]:
    """The update, with what every single-network task logs beside its own metrics: the step's
    learning rate and the gradients' global norm."""
    metrics = {
        **metrics,
        "learning_rate": learning_rate(state.step),
        "grad_norm": optax.tree.norm(grads),
    }
    return state.apply_gradients(grads), metrics
