"""Classification: cross-entropy loss, accuracy, one network, one optimizer.

Sequence classifiers get each example's length (`batch['length']`, when the dataset has it) as
the model's `lengths` argument. Per-step labels (B, T) make it a tagging task: loss and accuracy
are averaged over the steps before each sequence's length.

The train loss takes the soft labels that mixup and cutmix put in `batch['target']` when they
are there (label smoothing applies on top); the train accuracy and the evaluation use the
integer labels.

With `config.quant.scheme` set the model trains quantization-aware (models/quantized.py):
its forward pass rounds weights (and activations) as the quantized model will, the gradients
pass straight through the rounding. `jaxdl quantize` then turns the run into the small model.

With a teacher (`config.distill.teacher`, set by the engine with `with_teacher`) the loss mixes
in the KL divergence to its softened outputs (tasks/distillation.py); 'loss' is then the mix,
'label_loss' and 'distill_loss' its two terms.

With a float16 model the optimizer is wrapped in dynamic loss scaling (jaxdl/loss_scale.py):
the loss is multiplied by the current scale before differentiation, and a step whose
gradients overflow is skipped.
"""

import copy
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from jaxdl import loss_scale, optim, pruning
from jaxdl.models import build_model, quantized
from jaxdl.tasks import class_balance, classification_metrics, distillation
from jaxdl.tasks.adversarial import AdversarialTraining
from jaxdl.tasks.base import Batch, Metrics, Task
from jaxdl.tasks.distillation import DistillState, Teacher
from jaxdl.tasks.state import TrainState, apply_grads_with_metrics


class ClassificationTask(Task):
    def __init__(
        self,
        model: nn.Module,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        num_classes: int,
        label_smoothing: float = 0.0,
        loss_scaled: bool = False,
        teacher: Teacher | None = None,
        adversarial: AdversarialTraining | None = None,
        balance: class_balance.ClassBalance | None = None,
    ):
        self.model = model
        self.tx = tx
        self.learning_rate = learning_rate
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.loss_scaled = loss_scaled
        self.teacher = teacher
        self.adversarial = adversarial
        self.balance = balance  # Class weights and focal loss for the train loss (or None).

    def with_teacher(self, teacher: Teacher) -> "ClassificationTask":
        task = copy.copy(self)
        task.teacher = teacher
        return task

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "ClassificationTask":
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(
            config.model,
            num_classes=dataset.num_classes,
            vocab_size=dataset.vocab_size,
            batch_axis_name=batch_axis_name,
        )
        qat = quantized.qat_spec(config.quant)
        if qat is not None:  # Same parameters; the forward pass rounds them (and activations).
            model = quantized.qat_model(model, qat)
        tx = pruning.wrap(tx, config, model)  # Masks kept in the optimizer state.
        # float16 underflows where bfloat16 (float32's exponent range) does not.
        loss_scaled = jnp.dtype(getattr(model, "dtype", jnp.float32)) == jnp.float16
        if loss_scaled:
            tx = loss_scale.dynamic_loss_scale(
                tx,
                initial_scale=config.train.get("loss_scale_init", 2.0**15),
                growth_interval=config.train.get("loss_scale_growth_interval", 2000),
            )
        return cls(
            model=model,
            tx=tx,
            learning_rate=learning_rate,
            num_classes=dataset.num_classes,
            label_smoothing=config.task.label_smoothing,
            loss_scaled=loss_scaled,
            adversarial=AdversarialTraining.from_config(config.task, dataset),
            balance=class_balance.from_config(config.task, dataset),
        )

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        variables = self.model.init(
            {"params": init_rng, "dropout": dropout_rng},
            batch["input"],
            train=False,
            **model_kwargs(batch),
        )
        if self.teacher is None:
            return TrainState.from_variables(variables, state_rng, self.model.apply, self.tx)
        state = DistillState.from_variables(variables, state_rng, self.model.apply, self.tx)
        teacher = distillation.teacher_variables(
            self.teacher.model, init_rng, batch["input"], **model_kwargs(batch)
        )
        return state.replace(teacher=teacher)

    def _loss(
        self,
        logits: jax.Array,
        targets: jax.Array,
        smoothing: float,
        balance: class_balance.ClassBalance | None = None,
    ) -> jax.Array:
        """Cross-entropy against class distributions `targets` (B, num_classes), smoothed;
        class-weighted and focal as `balance` says (the train loss's, tasks/class_balance.py)."""
        targets = optax.smooth_labels(targets, smoothing)
        if balance is None:
            return optax.softmax_cross_entropy(logits, targets)
        return balance.loss(logits, targets)

    def _targets(self, batch: Batch) -> jax.Array:
        """The soft labels of mixup or cutmix (`batch['target']`) if the batch has them, else
        the one-hot labels."""
        if "target" in batch:
            return batch["target"]
        return jax.nn.one_hot(batch["label"], self.num_classes)

    def compute_grads(
        self, state: TrainState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, TrainState]:
        mutable = list(state.model_state)
        rng = state.step_rng()
        if micro_batch is not None:
            rng = jax.random.fold_in(rng, micro_batch)
        scale = loss_scale.current_scale(state.opt_state) if self.loss_scaled else None
        weights = step_weights(batch)
        teacher_logits = None
        if self.teacher is not None:  # Frozen: no gradient flows into the teacher.
            teacher_logits = jax.lax.stop_gradient(
                self.teacher.model.apply(
                    state.teacher_variables(), batch["input"], train=False, **model_kwargs(batch)
                )
            )

        def forward(variables: Any, x: jax.Array) -> tuple[jax.Array, Any]:
            """(logits, updated model state) in training mode: the loss's, and the attack's."""
            return state.apply_fn(
                variables,
                x,
                train=True,
                rngs={"dropout": rng},
                mutable=mutable,
                **model_kwargs(batch),
            )

        inputs, attacked = batch["input"], None
        if self.adversarial is not None:  # Attack the current parameters (tasks/adversarial.py).

            def logits_fn(x):  # Training mode, as the loss sees it; its BN updates are dropped.
                return forward({"params": state.params, **state.model_state}, x)[0]

            attacked = self.adversarial.examples(logits_fn, batch, rng, weights)
            inputs = batch["input"] if self.adversarial.trains_on_clean else attacked

        def loss_fn(params):
            logits, new_model_state = forward({"params": params, **state.model_state}, inputs)
            losses = self._loss(logits, self._targets(batch), self.label_smoothing, self.balance)
            terms = {"label_loss": weighted_mean(losses, weights)}
            loss = terms["label_loss"]
            if teacher_logits is not None:
                kd = distillation.distillation_loss(
                    logits, teacher_logits, self.teacher.temperature
                )
                terms["distill_loss"] = weighted_mean(kd, weights)
                alpha = self.teacher.alpha
                loss = (1 - alpha) * terms["label_loss"] + alpha * terms["distill_loss"]
            if attacked is not None and self.adversarial.trains_on_clean:  # TRADES
                adversarial_logits, new_model_state = forward(
                    {"params": params, **new_model_state}, attacked
                )
                kl = self.adversarial.divergence(logits, adversarial_logits)
                terms["trades_kl"] = weighted_mean(kl, weights)
                loss = loss + self.adversarial.trades_beta * terms["trades_kl"]
            scaled = loss if scale is None else loss * scale
            return scaled, (loss, terms, logits, new_model_state)

        (_, (loss, terms, logits, new_model_state)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(state.params)
        correct = jnp.argmax(logits, -1) == batch["label"]
        metrics = {"loss": loss, "accuracy": weighted_mean(correct, weights)}
        if teacher_logits is not None:
            metrics |= terms
        if "trades_kl" in terms:
            metrics["trades_kl"] = terms["trades_kl"]
        return grads, metrics, state.replace(model_state=dict(new_model_state))

    def apply_grads(
        self, state: TrainState, grads: Any, metrics: Metrics
    ) -> tuple[TrainState, Metrics]:
        if not self.loss_scaled:
            return apply_grads_with_metrics(state, grads, metrics, self.learning_rate)
        metrics = {**metrics, "learning_rate": self.learning_rate(state.step)}
        scale = loss_scale.current_scale(state.opt_state)
        grad_norm = optax.tree.norm(grads) / scale
        new_state = state.apply_gradients(grads)
        skipped = loss_scale.step_was_skipped(state.opt_state, new_state.opt_state)
        # An overflowed step is skipped by the optimizer; its norm would read as divergence.
        metrics["grad_norm"] = jnp.where(jnp.isfinite(grad_norm), grad_norm, 0.0)
        metrics["loss_scale"] = scale
        metrics["overflow_skipped"] = skipped.astype(jnp.float32)
        return new_state, metrics

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        variables = {"params": state.params, **state.model_state}
        logits = state.apply_fn(variables, batch["input"], train=False, **model_kwargs(batch))
        weights = step_weights(batch)
        mask = batch["mask"] if weights is None else batch["mask"][:, None] * weights
        if weights is None and batch["label"].ndim == 2:
            mask = jnp.broadcast_to(mask[:, None], batch["label"].shape)
        loss = self._loss(logits, jax.nn.one_hot(batch["label"], self.num_classes), 0.0)
        correct = jnp.argmax(logits, -1) == batch["label"]
        return {
            "loss": jnp.sum(loss * mask),
            "accuracy": jnp.sum(correct * mask),
            "count": jnp.sum(mask),
            # Confusion counts and calibration sums: classification_metrics.py reports them.
            **classification_metrics.eval_sums(logits, batch["label"], mask, self.num_classes),
        }

    def finalize_eval(self, sums: dict[str, Any]) -> dict[str, float]:
        sums = dict(sums)
        arrays = {n: sums.pop(n) for n in classification_metrics.ARRAY_SUMS if n in sums}
        metrics = super().finalize_eval(sums)
        if len(arrays) < len(classification_metrics.ARRAY_SUMS):  # Sums from another eval step.
            return metrics
        return metrics | classification_metrics.scalar_metrics(arrays)

    def eval_metric_names(self, sum_names: Any) -> set[str]:
        arrays = set(classification_metrics.ARRAY_SUMS)
        names = {name for name in super().eval_metric_names(sum_names) if name not in arrays}
        return names | set(classification_metrics.SCALAR_METRICS)

    def run_report(
        self, validation_sums: dict[str, Any], sums: dict[str, Any], split: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """summary.json's `classification_report` of `split` (temperature scaling fitted on
        validation), with confusion_matrix.png and reliability.png."""
        from jaxdl.tasks import classification_figures  # matplotlib: not at every CLI start.

        report = classification_metrics.report(validation_sums, sums, split)
        figures = {
            "confusion_matrix.png": classification_figures.confusion_figure(report),
            "reliability.png": classification_figures.reliability_figure(report),
        }
        return {"classification_report": report}, figures


def model_kwargs(batch: Batch) -> dict[str, jax.Array]:
    """What a model gets besides the inputs: the sequences' lengths, when the data has them."""
    return {"lengths": batch["length"]} if "length" in batch else {}


def step_weights(batch: Batch) -> jax.Array | None:
    """None when every label counts (one per example, or per-step labels without lengths);
    for per-step labels with lengths, (B, T) with zeros past each sequence's length."""
    label = batch["label"]
    if label.ndim == 1 or "length" not in batch:
        return None
    steps = jnp.arange(label.shape[1])
    return (steps[None, :] < batch["length"][:, None]).astype(jnp.float32)


def weighted_mean(values: jax.Array, weights: jax.Array | None) -> jax.Array:
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)
