"""Optax optimizers and learning-rate schedules from config.

Tasks call `make_optimizer`; a task with two networks (a GAN) calls it twice with two sub-configs.
"""

import jax
import ml_collections
import optax

from jaxdl.errors import UserInputError


def make_schedule(
    schedule: ml_collections.ConfigDict, peak_lr: float, num_steps: int
) -> optax.Schedule:
    """Learning rate as a function of the step: constant, warmup + cosine, or warmup + step decay."""
    warmup = int(schedule.warmup_steps)
    if schedule.name == "constant":
        main = optax.constant_schedule(peak_lr)
    elif schedule.name == "warmup_cosine":
        main = optax.cosine_decay_schedule(
            peak_lr, decay_steps=max(num_steps - warmup, 1), alpha=schedule.end_factor
        )
    elif schedule.name == "step":
        # Boundaries are fractions of the whole run so that a quick variant keeps the same shape.
        boundaries = {
            max(int(b * num_steps) - warmup, 1): schedule.decay_factor for b in schedule.boundaries
        }
        main = optax.piecewise_constant_schedule(peak_lr, boundaries)
    else:
        raise UserInputError(
            f"config.schedule.name: unknown schedule {schedule.name!r}; "
            "choose constant, warmup_cosine or step."
        )
    if warmup == 0:
        return main
    ramp = optax.linear_schedule(0.0, peak_lr, warmup)
    return optax.join_schedules([ramp, main], boundaries=[warmup])


def _decay_mask(params):
    # Weight decay on biases and normalisation scales hurts more than it regularises.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    optimizer: ml_collections.ConfigDict,
    schedule: ml_collections.ConfigDict,
    num_steps: int,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer and its schedule (returned so steps can log the learning rate)."""
    lr = make_schedule(schedule, optimizer.learning_rate, num_steps)
    mask = None if optimizer.decay_all_params else _decay_mask
    name = optimizer.name
    if name == "sgd":
        base = optax.sgd(lr)
    elif name in ("momentum", "nesterov"):
        base = optax.sgd(lr, momentum=optimizer.momentum, nesterov=name == "nesterov")
    elif name == "adam":
        base = optax.adam(lr, b1=optimizer.b1, b2=optimizer.b2, eps=optimizer.eps)
    elif name == "adamw":
        base = optax.adamw(
            lr,
            b1=optimizer.b1,
            b2=optimizer.b2,
            eps=optimizer.eps,
            weight_decay=optimizer.weight_decay,
            mask=mask,
        )
    else:
        raise UserInputError(
            f"config.optimizer.name: unknown optimizer {name!r}; "
            "choose sgd, momentum, nesterov, adam or adamw."
        )
    parts = []
    if optimizer.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optimizer.grad_clip_norm))
    if name != "adamw" and optimizer.weight_decay > 0:
        # Coupled (L2-style) decay for optimizers without a decoupled variant.
        parts.append(optax.add_decayed_weights(optimizer.weight_decay, mask=mask))
    parts.append(base)
    return optax.chain(*parts), lr
