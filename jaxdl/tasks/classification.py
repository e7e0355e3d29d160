"""Classification: cross-entropy loss, accuracy, one network, one optimizer."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from jaxdl import optim
from jaxdl.models import build_model
from jaxdl.tasks.base import Batch, Metrics, Task
from jaxdl.tasks.state import TrainState


class ClassificationTask(Task):
    def __init__(
        self,
        model: nn.Module,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        num_classes: int,
        label_smoothing: float = 0.0,
    ):
        self.model = model
        self.tx = tx
        self.learning_rate = learning_rate
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, dataset: Any) -> "ClassificationTask":
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        return cls(
            model=build_model(config.model, num_classes=dataset.num_classes),
            tx=tx,
            learning_rate=learning_rate,
            num_classes=dataset.num_classes,
            label_smoothing=config.task.label_smoothing,
        )

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        variables = self.model.init(
            {"params": init_rng, "dropout": dropout_rng}, batch["input"], train=False
        )
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.tx.init(params),
            model_state=dict(variables),
            rng=state_rng,
            apply_fn=self.model.apply,
            tx=self.tx,
        )

    def _loss(self, logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
        targets = optax.smooth_labels(jax.nn.one_hot(labels, self.num_classes), smoothing)
        return optax.softmax_cross_entropy(logits, targets)

    def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        mutable = list(state.model_state)

        def loss_fn(params):
            variables = {"params": params, **state.model_state}
            logits, new_model_state = state.apply_fn(
                variables,
                batch["input"],
                train=True,
                rngs={"dropout": state.step_rng()},
                mutable=mutable,
            )
            loss = self._loss(logits, batch["label"], self.label_smoothing).mean()
            return loss, (logits, new_model_state)

        (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": self.learning_rate(state.step),
        }
        return state.apply_gradients(grads, model_state=dict(new_model_state)), metrics

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        variables = {"params": state.params, **state.model_state}
        logits = state.apply_fn(variables, batch["input"], train=False)
        mask = batch["mask"]
        loss = self._loss(logits, batch["label"], 0.0)
        correct = jnp.argmax(logits, -1) == batch["label"]
        return {
            "loss": jnp.sum(loss * mask),
            "accuracy": jnp.sum(correct * mask),
            "count": jnp.sum(mask),
        }
