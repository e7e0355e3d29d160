"""Adversarial examples and adversarial training: FGSM and PGD under L-inf or L2, pure JAX.

An attack maximises a per-example loss `loss_fn(inputs) -> (B,)` inside a ball of radius eps
around each input, and every candidate is clipped to the data's valid input range
(`DatasetSpec.input_range`), so an adversarial image is still an image. Radii are given on
[0, 1] pixels, as papers quote them, and scaled to the model's input units by the width of
that range (`Attack.create`); a dataset that declares no range is neither scaled nor clipped.

- FGSM: one step of length eps along the gradient's sign (L-inf) or its direction (L2).
- PGD: a uniform random start in the ball, then `steps` steps of `step_size` (default
  2.5 * eps / steps, Madry et al.), each projected back into the ball and the range.
  `restarts` independent starts; each example keeps its worst (highest-loss) candidate.

Every attack keeps, per example, the highest-loss point it visited, starting from the clean
input: more steps or restarts never return a weaker example than fewer.

Adversarial training (`config.task.adversarial`, used by ClassificationTask.compute_grads)
attacks the current parameters inside the compiled step, from the step's rng, so a run stays
deterministic. The attack sees the network exactly as the loss does: training mode (batch
norm on the batch's own statistics, the step's dropout mask); the attack's batch-norm
statistic updates are thrown away, so the running averages come only from the loss's pass.
fgsm and pgd train on the adversarial batch; trades (Zhang et al. 2019) trains on the clean
batch plus beta * KL(clean || adversarial), with the attack maximising that KL.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl import config_checks
from jaxdl.errors import UserInputError

ATTACKS = config_checks.ATTACK_METHODS
TRAINING_METHODS = config_checks.ADVERSARIAL_METHODS
NORMS = config_checks.ADVERSARIAL_NORMS
# Folded into the step's rng for the attack's random start (the dropout mask uses the rng itself).
ATTACK_STREAM = 0x0AD7

LossFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Attack:
    """One attack, in the model's input units (build it with `Attack.create`)."""

    method: str
    eps: float
    norm: str
    steps: int
    step_size: float
    restarts: int = 1
    low: float | None = None  # The valid input range; None: not clipped.
    high: float | None = None

    @classmethod
    def create(
        cls,
        method: str,
        eps: float,
        norm: str,
        input_range: tuple[float, float] | None,
        steps: int = 20,
        step_size: float = 0.0,
        restarts: int = 1,
    ) -> "Attack":
        """eps and step_size on [0, 1] pixels (step_size 0: 2.5 * eps / steps); FGSM is one
        step of length eps from the clean input, so it ignores steps, step_size and restarts."""
        if method not in ATTACKS:
            raise UserInputError(f"attack method {method!r}: choose one of {', '.join(ATTACKS)}.")
        if norm not in NORMS:
            raise UserInputError(f"attack norm {norm!r}: choose one of {', '.join(NORMS)}.")
        scale = 1.0 if input_range is None else float(input_range[1] - input_range[0])
        low, high = (None, None) if input_range is None else map(float, input_range)
        if method == "fgsm":
            return cls("fgsm", eps * scale, norm, 1, eps * scale, 1, low, high)
        size = step_size if step_size > 0 else 2.5 * eps / steps
        return cls("pgd", eps * scale, norm, steps, size * scale, restarts, low, high)


def per_example_norm(x: jax.Array, norm: str) -> jax.Array:
    """(B,) L-inf or L2 norms over every axis but the first."""
    flat = x.reshape(x.shape[0], -1)
    if norm == "linf":
        return jnp.max(jnp.abs(flat), axis=1)
    return jnp.sqrt(jnp.sum(flat * flat, axis=1))


def _per_example(values: jax.Array, like: jax.Array) -> jax.Array:
    """(B,) values shaped to broadcast against `like` (B, ...)."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def _direction(grad: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent direction of unit norm: the gradient's sign, or its L2 direction."""
    if norm == "linf":
        return jnp.sign(grad)
    length = _per_example(per_example_norm(grad, "l2"), grad)
    return grad / jnp.maximum(length, 1e-12)


def _project(delta: jax.Array, eps: float, norm: str) -> jax.Array:
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    length = _per_example(per_example_norm(delta, "l2"), delta)
    return delta * jnp.minimum(1.0, eps / jnp.maximum(length, 1e-12))


def _constrain(clean: jax.Array, candidate: jax.Array, attack: Attack) -> jax.Array:
    """Into the eps ball around `clean`, then into the input range. For an input inside the
    range, clipping only shrinks each coordinate of the perturbation, so both hold after it."""
    moved = clean + _project(candidate - clean, attack.eps, attack.norm)
    if attack.low is None:
        return moved
    return jnp.clip(moved, attack.low, attack.high)


def _random_start(key: jax.Array, clean: jax.Array, attack: Attack) -> jax.Array:
    """A point drawn uniformly from the eps ball (L-inf: a cube; L2: direction and radius)."""
    if attack.norm == "linf":
        delta = jax.random.uniform(key, clean.shape, clean.dtype, -attack.eps, attack.eps)
    else:
        direction_key, radius_key = jax.random.split(key)
        direction = _direction(jax.random.normal(direction_key, clean.shape, clean.dtype), "l2")
        dims = clean[0].size
        radius = attack.eps * jax.random.uniform(radius_key, (clean.shape[0],)) ** (1 / dims)
        delta = direction * _per_example(radius, clean)
    return _constrain(clean, clean + delta, attack)


def _keep_worse(
    candidate: jax.Array, losses: jax.Array, best: jax.Array, best_losses: jax.Array
) -> tuple[jax.Array, jax.Array]:
    better = losses > best_losses
    return jnp.where(_per_example(better, candidate), candidate, best), jnp.where(
        better, losses, best_losses
    )


def _ascend(
    loss_fn: LossFn, clean: jax.Array, start: jax.Array, attack: Attack, best: tuple
) -> tuple[jax.Array, jax.Array]:
    """`attack.steps` projected ascent steps from `start`; the worst point seen (with `best`)."""

    def step(_, carry):
        current, best_inputs, best_losses = carry
        losses, vjp = jax.vjp(loss_fn, current)
        (grad,) = vjp(jnp.ones_like(losses))
        best_inputs, best_losses = _keep_worse(current, losses, best_inputs, best_losses)
        moved = current + attack.step_size * _direction(grad, attack.norm)
        return _constrain(clean, moved, attack), best_inputs, best_losses

    current, best_inputs, best_losses = jax.lax.fori_loop(0, attack.steps, step, (start, *best))
    return _keep_worse(current, loss_fn(current), best_inputs, best_losses)


def perturb(
    loss_fn: LossFn, inputs: jax.Array, attack: Attack, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(adversarial inputs, their losses (B,)): the highest-loss point found per example over
    the clean input and every restart. Restart r starts from `fold_in(key, r)`, so a run with
    more restarts sees every start of one with fewer. Pure: jit and vmap it freely."""
    inputs = jax.lax.stop_gradient(inputs)
    best = (inputs, loss_fn(inputs))
    if attack.method == "fgsm":
        return _ascend(loss_fn, inputs, inputs, attack, best)

    def restart(index, best):
        start = _random_start(jax.random.fold_in(key, index), inputs, attack)
        return _ascend(loss_fn, inputs, start, attack, best)

    return jax.lax.fori_loop(0, attack.restarts, restart, best)


def cross_entropy_per_example(
    logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """(B,) cross-entropy; per-step labels (B, T) average over the steps (weighted if given)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if losses.ndim == 1:
        return losses
    losses = losses.reshape(losses.shape[0], -1)
    if weights is None:
        return jnp.mean(losses, axis=1)
    weights = weights.reshape(losses.shape)
    return jnp.sum(losses * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


def kl_divergence(clean_logits: jax.Array, adversarial_logits: jax.Array) -> jax.Array:
    """KL(softmax(clean) || softmax(adversarial)) over the last axis."""
    clean = jax.nn.log_softmax(clean_logits)
    return jnp.sum(jnp.exp(clean) * (clean - jax.nn.log_softmax(adversarial_logits)), axis=-1)


@dataclasses.dataclass(frozen=True)
class AdversarialTraining:
    """The `config.task.adversarial*` fields, resolved against the dataset."""

    method: str  # fgsm, pgd or trades
    attack: Attack
    trades_beta: float

    @property
    def trains_on_clean(self) -> bool:
        """TRADES: the label loss is on the clean batch; the adversarial one enters the KL."""
        return self.method == "trades"

    def examples(
        self,
        logits_fn: LossFn,
        batch: dict[str, jax.Array],
        rng: jax.Array,
        weights: jax.Array | None = None,
    ) -> jax.Array:
        """The adversarial batch inputs against `logits_fn(inputs) -> logits` (the current
        parameters), deterministic in `rng`; no gradient flows back through it."""
        if self.trains_on_clean:
            clean_logits = jax.lax.stop_gradient(logits_fn(batch["input"]))

            def loss_fn(inputs):
                kl = kl_divergence(clean_logits, logits_fn(inputs))
                return kl.reshape(kl.shape[0], -1).mean(axis=1)
        else:

            def loss_fn(inputs):
                return cross_entropy_per_example(logits_fn(inputs), batch["label"], weights)

        adversarial, _ = perturb(
            loss_fn, batch["input"], self.attack, jax.random.fold_in(rng, ATTACK_STREAM)
        )
        return jax.lax.stop_gradient(adversarial)

    @staticmethod
    def divergence(clean_logits: jax.Array, adversarial_logits: jax.Array) -> jax.Array:
        """TRADES' term, per example (or per step): KL(clean || adversarial)."""
        return kl_divergence(clean_logits, adversarial_logits)

    @staticmethod
    def from_config(task: ml_collections.ConfigDict, dataset: Any) -> "AdversarialTraining | None":
        """None when `task.adversarial` is '' (the fields are checked in config_checks.py)."""
        method = task.get("adversarial", "")
        if not method:
            return None
        if getattr(dataset, "vocab_size", 0):
            raise UserInputError(
                f"config.task.adversarial={method!r}: dataset {dataset.name!r} has token "
                "inputs; attacks perturb real-valued inputs (images, vectors, signals). "
                "Leave it at ''."
            )
        # TRADES attacks as PGD does; FGSM training is one step of length eps.
        attack = Attack.create(
            "fgsm" if method == "fgsm" else "pgd",
            task.adversarial_eps,
            task.adversarial_norm,
            dataset.input_range,
            steps=task.adversarial_steps,
            step_size=task.adversarial_step_size,
        )
        return AdversarialTraining(method, attack, task.trades_beta)
