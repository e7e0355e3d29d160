"""Losses for imbalanced classes: class-weighted cross-entropy and focal loss.

task.class_weighting gives each class c a weight from n_c, its train examples as the run sees
them (after data.classes, train_examples_per_class and imbalance_ratio):
  'inverse'   w_c proportional to 1 / n_c;
  'effective' w_c proportional to (1 - beta) / (1 - beta^n_c), the inverse of the "effective
              number of samples" (Cui et al. 2019, task.class_weighting_beta);
both normalised to mean 1 over the classes, so the loss keeps its scale. task.focal_gamma > 0
multiplies each class's term by (1 - p_c)^gamma (Lin et al. 2017), down-weighting examples the
model already gets right. Both act on the train loss only; the validation loss stays the plain
cross-entropy, comparable across runs.

With soft targets t (label smoothing, mixup) the loss is -sum_c w_c t_c (1 - p_c)^gamma log p_c,
which for one-hot targets is w_y (1 - p_y)^gamma (-log p_y).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import config_checks
from jaxdl.data.imbalance import class_counts
from jaxdl.errors import UserInputError

CLASS_WEIGHTINGS = config_checks.CLASS_WEIGHTINGS


def class_weights(counts: np.ndarray, method: str, beta: float = 0.999) -> np.ndarray:
    """(C,) float32 weights with mean 1 over the classes, from the per-class counts `counts`.

    A class with no train examples gets weight 0: it is never a target, and its 1 / n_c would
    be infinite.
    """
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    if method == "inverse":
        raw = np.where(present, 1.0 / np.maximum(counts, 1.0), 0.0)
    elif method == "effective":
        raw = np.where(present, (1.0 - beta) / (1.0 - np.power(beta, counts)), 0.0)
    else:
        raise UserInputError(
            f"task.class_weighting={method!r} has no weights; choose 'inverse' or 'effective'."
        )
    return (raw * present.sum() / raw.sum()).astype(np.float32)


def balanced_cross_entropy(
    logits: jax.Array,
    targets: jax.Array,
    weights: jax.Array | None = None,
    focal_gamma: float = 0.0,
) -> jax.Array:
    """Per-example loss over the last axis: -sum_c w_c t_c (1 - p_c)^gamma log p_c.

    With no weights and focal_gamma 0 it is optax.softmax_cross_entropy.
    """
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    terms = targets * log_p
    if focal_gamma:
        # 1 - p from expm1 keeps its precision near p = 1; the floor keeps (1 - p)^gamma's
        # gradient finite for gamma < 1 where p rounds to 1.
        one_minus_p = jnp.maximum(-jnp.expm1(log_p), jnp.finfo(jnp.float32).tiny)
        terms = terms * one_minus_p**focal_gamma
    if weights is not None:
        terms = terms * weights
    return -jnp.sum(terms, axis=-1)


@dataclasses.dataclass(frozen=True)
class ClassBalance:
    """The train loss's class weights (None: all 1) and focal gamma (0: plain cross-entropy)."""

    weights: tuple[float, ...] | None = None
    focal_gamma: float = 0.0

    def loss(self, logits: jax.Array, targets: jax.Array) -> jax.Array:
        weights = None if self.weights is None else jnp.asarray(self.weights, jnp.float32)
        return balanced_cross_entropy(logits, targets, weights, self.focal_gamma)


def from_config(task: ml_collections.ConfigDict, dataset: Any) -> ClassBalance | None:
    """The ClassBalance config.task asks for, or None when it asks for neither weights nor
    focal loss (the plain cross-entropy). Counts come from `dataset`'s train split."""
    method = task.get("class_weighting", "none")
    gamma = float(task.get("focal_gamma", 0.0))
    if method not in CLASS_WEIGHTINGS:
        raise UserInputError(
            f"config.task.class_weighting: got {method!r}; choose one of "
            f"{', '.join(CLASS_WEIGHTINGS)}."
        )
    if method == "none" and gamma == 0:
        return None
    weights = None
    if method != "none":
        counts = class_counts(dataset, f"task.class_weighting={method!r}")
        beta = float(task.get("class_weighting_beta", 0.999))
        weights = tuple(float(w) for w in class_weights(counts, method, beta))
    return ClassBalance(weights, gamma)
