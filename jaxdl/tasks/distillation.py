"""Knowledge distillation (Hinton et al., 2015): a student learns from a frozen teacher's
temperature-softened outputs as well as from the labels.

The teacher's variables live in the train state (`DistillState.teacher`), so they are sharded,
checkpointed and restored like the rest and a resumed run sees the same teacher; the optimizer
never sees them and the teacher's forward pass runs under `stop_gradient` inside the same
compiled step as the student's. They are filled from the teacher run's checkpoint by the engine's
init_from mechanism (engine/init_from.py), as a fine-tuned run's parameters are.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxdl.tasks.state import TrainState


@dataclasses.dataclass(frozen=True)
class Teacher:
    """The teacher network and how its outputs are mixed into the loss (`config.distill`)."""

    model: nn.Module
    temperature: float = 4.0
    alpha: float = 0.9  # Weight of the distillation term; 1 - alpha goes to the labels.


class DistillState(TrainState):
    """A TrainState plus the frozen teacher's variables: {'params': ..., 'model_state': {...}}."""

    teacher: Any = None

    def teacher_variables(self) -> dict[str, Any]:
        return {"params": self.teacher["params"], **self.teacher["model_state"]}


def teacher_variables(teacher: nn.Module, rng: jax.Array, *args: Any, **kwargs: Any) -> dict:
    """Freshly initialised teacher variables (shapes for the state; the engine then copies the
    trained ones in), split as DistillState.teacher keeps them."""
    variables = dict(teacher.init(rng, *args, train=False, **kwargs))
    params = variables.pop("params")
    return {"params": params, "model_state": variables}


def distillation_loss(
    student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
) -> jax.Array:
    """Per-example KL(teacher || student) of the temperature-softened distributions, times
    temperature**2 so the gradients keep their scale as the temperature changes."""
    teacher_log_probs = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    teacher_probs = jnp.exp(teacher_log_probs)
    kl = jnp.sum(teacher_probs * (teacher_log_probs - student_log_probs), axis=-1)
    return kl * temperature**2
