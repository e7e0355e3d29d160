"""Sequence to sequence: an encoder-decoder trained with teacher forcing, evaluated by decoding.

Batches hold token ids `source` (B, S) and `target` (B, T) with their lengths, 0 padding after
them. The decoder reads BOS + target and predicts target + EOS; the loss is the mean
cross-entropy over those real positions (padding ignored). Evaluation reports the teacher-forced
loss and token accuracy per target token, and `exact_match`: the share of examples whose whole
target, EOS included, comes out of greedy decoding (or beam search, `task.beam_size` > 1) inside
the compiled eval step.

Task fields (`config.task.*`, defaults in TASK_FIELDS): `beam_size` (1: greedy decoding),
`length_penalty` (alpha of GNMT's length normalisation in beam search), `max_source_length`
and `max_target_length` (decoder positions, EOS included; 0: the dataset's full width). Short
windows make steps cheaper; an example that does not fit is trained on its first tokens only
and always counts as wrong in exact_match, so a too-short window shows in the metric.
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
from jaxdl.text.decoding import beam_search, greedy_decode

# Ids 1 and 2 never occur in the byte-level datasets' text (0 pads): start and end of target.
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2

TASK_FIELDS = {
    "beam_size": 1,
    "length_penalty": 0.6,
    "max_source_length": 0,
    "max_target_length": 0,
}


def _field(task: ml_collections.ConfigDict, name: str) -> Any:
    value = task.get(name, TASK_FIELDS[name])
    if name == "length_penalty":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and value >= 0):
            raise UserInputError(
                f"task.length_penalty={value!r} must be a finite number >= 0 (0: no length "
                "normalisation; 0.6 is GNMT's)."
            )
        return float(value)
    lowest = 1 if name == "beam_size" else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise UserInputError(
            f"task.{name}={value!r} must be an integer >= {lowest}"
            + (" (1: greedy decoding)." if name == "beam_size" else " (0: the data's width).")
        )
    return value


class Seq2SeqTask(Task):
    def __init__(
        self,
        model: nn.Module,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        *,
        label_smoothing: float = 0.0,
        beam_size: int = 1,
        length_penalty: float = 0.6,
        max_source_length: int = 0,
        max_target_length: int = 0,
    ):
        self.model = model
        self.tx = tx
        self.learning_rate = learning_rate
        self.label_smoothing = label_smoothing
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "Seq2SeqTask":
        features = dataset.features or {}
        missing = [
            k for k in ("source", "source_length", "target", "target_length") if k not in features
        ]
        if missing:
            raise UserInputError(
                f"task.name='seq2seq' needs source and target token ids, but dataset "
                f"{dataset.name!r} has no {', '.join(missing)}; use a sequence-pair dataset "
                "such as data.name='algorithmic/reverse'."
            )
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(
            config.model,
            num_classes=dataset.num_classes,
            vocab_size=dataset.vocab_size,
            batch_axis_name=batch_axis_name,
        )
        fields = {name: _field(config.task, name) for name in TASK_FIELDS}
        return cls(model, tx, learning_rate, label_smoothing=config.task.label_smoothing, **fields)

    def _prepare(self, batch: Batch) -> dict[str, jax.Array]:
        """Windowed source, decoder input and target, target weights, and which examples fit."""
        width = self.max_source_length or batch["source"].shape[1]
        source = batch["source"][:, :width]
        source_length = batch["source_length"]
        length = self.max_target_length or batch["target"].shape[1] + 1
        target, target_length = batch["target"][:, :length], batch["target_length"]
        target = jnp.pad(target, ((0, 0), (0, length - target.shape[1])))
        position = jnp.arange(length)
        real = position < target_length[:, None]
        ends = position == target_length[:, None]
        decoder_target = jnp.where(real, target, jnp.where(ends, EOS_ID, PAD_ID))
        bos = jnp.full((target.shape[0], 1), BOS_ID, decoder_target.dtype)
        return {
            "source": source,
            "source_lengths": jnp.minimum(source_length, width),
            "decoder_input": jnp.concatenate([bos, decoder_target[:, :-1]], axis=1),
            "decoder_target": decoder_target,
            "weights": (position <= target_length[:, None]).astype(jnp.float32),
            "fits": (source_length <= width) & (target_length < length),
        }

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        inputs = self._prepare(batch)
        variables = self.model.init(
            {"params": init_rng, "dropout": dropout_rng},
            inputs["source"],
            inputs["decoder_input"],
            source_lengths=inputs["source_lengths"],
            train=False,
        )
        return TrainState.from_variables(variables, state_rng, self.model.apply, self.tx)

    def _token_loss(self, logits: jax.Array, targets: jax.Array, smoothing: float) -> jax.Array:
        """(B, T) cross-entropy per position."""
        if smoothing == 0.0:
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        labels = optax.smooth_labels(jax.nn.one_hot(targets, logits.shape[-1]), smoothing)
        return optax.softmax_cross_entropy(logits, labels)

    def compute_grads(
        self, state: TrainState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, TrainState]:
        rng = state.step_rng()
        if micro_batch is not None:
            rng = jax.random.fold_in(rng, micro_batch)
        inputs = self._prepare(batch)
        weights = inputs["weights"]
        tokens = jnp.maximum(weights.sum(), 1.0)

        def loss_fn(params):
            logits = state.apply_fn(
                {"params": params, **state.model_state},
                inputs["source"],
                inputs["decoder_input"],
                source_lengths=inputs["source_lengths"],
                train=True,
                rngs={"dropout": rng},
            )
            loss = self._token_loss(logits, inputs["decoder_target"], self.label_smoothing)
            return jnp.sum(loss * weights) / tokens, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        correct = jnp.argmax(logits, -1) == inputs["decoder_target"]
        metrics = {"loss": loss, "token_accuracy": jnp.sum(correct * weights) / tokens}
        return grads, metrics, state

    def apply_grads(
        self, state: TrainState, grads: Any, metrics: Metrics
    ) -> tuple[TrainState, Metrics]:
        return apply_grads_with_metrics(state, grads, metrics, self.learning_rate)

    def generate(self, variables: Any, source: jax.Array, source_lengths: jax.Array, length: int):
        """(B, length) decoded ids (EOS included, then padding): greedy, or beam search when
        beam_size > 1. Encodes once; each step reruns the decoder over the whole prefix."""
        apply = self.model.apply
        mask = jnp.arange(source.shape[1]) < source_lengths[:, None]
        encoded = apply(variables, source, mask, method="encode")
        rows = self.beam_size
        if rows > 1:  # logits_fn sees each example's beams as consecutive rows.
            encoded, mask = (jnp.repeat(x, rows, axis=0) for x in (encoded, mask))

        def logits_fn(tokens: jax.Array, t: jax.Array) -> jax.Array:
            logits = apply(variables, encoded, mask, tokens, method="decode")
            return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)

        ids = {"bos_id": BOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID}
        if rows == 1:
            return greedy_decode(logits_fn, source.shape[0], length, **ids)
        decoded, _ = beam_search(
            logits_fn,
            source.shape[0],
            length,
            beam_size=rows,
            length_penalty=self.length_penalty,
            **ids,
        )
        return decoded

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        variables = {"params": state.params, **state.model_state}
        inputs = self._prepare(batch)
        target, weights = inputs["decoder_target"], inputs["weights"]
        logits = state.apply_fn(
            variables,
            inputs["source"],
            inputs["decoder_input"],
            source_lengths=inputs["source_lengths"],
            train=False,
        )
        mask = batch["mask"]
        token_mask = weights * mask[:, None]
        loss = self._token_loss(logits, target, 0.0)
        decoded = self.generate(
            variables, inputs["source"], inputs["source_lengths"], target.shape[1]
        )
        exact = jnp.all((decoded == target) | (weights == 0), axis=1) & inputs["fits"]
        return {
            "loss": jnp.sum(loss * token_mask),
            "token_accuracy": jnp.sum((jnp.argmax(logits, -1) == target) * token_mask),
            "exact_match": jnp.sum(exact * mask),
            "tokens": jnp.sum(token_mask),
            "count": jnp.sum(mask),
        }

    def finalize_eval(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss and token accuracy per target token (EOS included), exact match per example."""
        tokens, count = max(sums["tokens"], 1.0), max(sums["count"], 1.0)
        return {
            "loss": sums["loss"] / tokens,
            "token_accuracy": sums["token_accuracy"] / tokens,
            "exact_match": sums["exact_match"] / count,
        }

    def summary_fields(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        """The number these experiments are judged by, at the top of summary.json."""
        return {"exact_match": test_metrics["exact_match"]}
