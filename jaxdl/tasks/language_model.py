"""Language modelling: next-token cross-entropy over every position, one network, one optimizer.

Batches hold `input` (B, T) token ids and `target` (B, T), the next token at each position;
an optional `target_mask` (B, T) leaves positions out (padding). The model maps (B, T) ids to
(B, T, num_classes) logits: the GPT decoder, or an RNN with `head='per_step'`.

`task.context` (optional; 0 or absent: the data's length) cuts every sequence into windows of
that many tokens, trained and evaluated as separate sequences: a 256-token record becomes two
of 128. Attention costs less per token, and a model with learned positions needs only `context`
of them; each window's first tokens then see less history.

Evaluation sums the negative log-likelihood over every real token, so the reported loss is
per token (nats), and `bits_per_char` is the same in bits: with byte-level tokens, bits per
byte, which is bits per character for ASCII text. `perplexity` is exp(loss).
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from jaxdl import optim
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.tasks.base import Batch, Metrics, Task
from jaxdl.tasks.state import TrainState, apply_grads_with_metrics


class LanguageModelTask(Task):
    def __init__(
        self,
        model: nn.Module,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        context: int = 0,
    ):
        self.model = model
        self.tx = tx
        self.learning_rate = learning_rate
        self.context = context

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "LanguageModelTask":
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(
            config.model,
            num_classes=dataset.num_classes,
            vocab_size=dataset.vocab_size,
            batch_axis_name=batch_axis_name,
        )
        return cls(
            model=model,
            tx=tx,
            learning_rate=learning_rate,
            context=_checked_context(config.task.get("context", 0), dataset),
        )

    def _windows(self, batch: Batch) -> Batch:
        """The batch with every (B, T) array cut into (B * T / context, context) windows."""
        if not self.context:
            return batch
        cut = {}
        for key, value in batch.items():
            if value.ndim == 2 and value.shape[1] > self.context:
                cut[key] = value.reshape(-1, self.context)
            elif key == "mask":  # One weight per example: one per window now.
                cut[key] = jnp.repeat(value, batch["target"].shape[1] // self.context)
            else:
                cut[key] = value
        return cut

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        batch = self._windows(batch)
        variables = self.model.init(
            {"params": init_rng, "dropout": dropout_rng}, batch["input"], train=False
        )
        return TrainState.from_variables(variables, state_rng, self.model.apply, self.tx)

    def compute_grads(
        self, state: TrainState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, TrainState]:
        mutable = list(state.model_state)
        rng = state.step_rng()
        if micro_batch is not None:
            rng = jax.random.fold_in(rng, micro_batch)
        batch = self._windows(batch)
        weights = _token_weights(batch)

        def loss_fn(params):
            variables = {"params": params, **state.model_state}
            logits, new_model_state = state.apply_fn(
                variables, batch["input"], train=True, rngs={"dropout": rng}, mutable=mutable
            )
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["target"])
            loss = jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)
            return loss, (logits, new_model_state)

        (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        correct = jnp.argmax(logits, -1) == batch["target"]
        metrics = {
            "loss": loss,
            "bits_per_char": loss / math.log(2.0),
            "accuracy": jnp.sum(correct * weights) / jnp.maximum(jnp.sum(weights), 1.0),
        }
        return grads, metrics, state.replace(model_state=dict(new_model_state))

    def apply_grads(
        self, state: TrainState, grads: Any, metrics: Metrics
    ) -> tuple[TrainState, Metrics]:
        return apply_grads_with_metrics(state, grads, metrics, self.learning_rate)

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        variables = {"params": state.params, **state.model_state}
        batch = self._windows(batch)
        logits = state.apply_fn(variables, batch["input"], train=False)
        weights = _token_weights(batch) * batch["mask"][:, None]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["target"])
        correct = jnp.argmax(logits, -1) == batch["target"]
        return {
            "loss": jnp.sum(losses * weights),
            "accuracy": jnp.sum(correct * weights),
            "count": jnp.sum(weights),
        }

    def finalize_eval(self, sums: dict[str, float]) -> dict[str, float]:
        means = super().finalize_eval(sums)
        means["bits_per_char"] = means["loss"] / math.log(2.0)
        means["perplexity"] = math.exp(min(means["loss"], 700.0))  # exp overflows past ~709.
        return means

    def summary_fields(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        return {"bits_per_char": test_metrics["bits_per_char"]}


def _checked_context(context: Any, dataset: Any) -> int:
    length = dataset.features["input"].shape[0]
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise UserInputError(f"task.context={context!r} must be an integer >= 0 (0: the data's).")
    if context and length % context:
        raise UserInputError(
            f"task.context={context} does not divide the dataset's {length}-token sequences; "
            "choose a divisor of it (or 0 for whole sequences)."
        )
    return context if context and context < length else 0


def _token_weights(batch: Batch) -> jax.Array:
    """(B, T) float32: 1 for every position whose target counts."""
    if "target_mask" in batch:
        return batch["target_mask"].astype(jnp.float32)
    return jnp.ones(batch["target"].shape, jnp.float32)
