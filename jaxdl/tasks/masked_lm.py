"""Masked language modelling (BERT's pre-training objective): predict hidden tokens.

Batches hold `input` (B, T) token ids and, optionally, `length` (B,): positions past it are
padding, never masked and not attended to. Each step picks `task.mask_rate` (15%) of the real
positions; of those, 80% become the mask token, 10% a random token and 10% stay as they are
(Devlin et al. 2019). The loss is the cross-entropy over the picked positions only, and the
accuracy is masked-token accuracy. The model maps (B, T) ids to (B, T, vocab) logits:
`model.name='bert'` with `head='mlm'`.

`task.mask_id` is the mask token: -1 (the default) adds one id after the dataset's vocabulary
(byte-level data has no spare id); a checkpoint's own [MASK] id keeps its vocabulary as it is.
`task.keep_ids` are never picked (e.g. [CLS] and [SEP]). Evaluation masks each batch the same
way every time (the key comes from the batch's token ids), so validation scores compare.
"""

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
from jaxdl.tasks.classification import model_kwargs
from jaxdl.tasks.state import TrainState, apply_grads_with_metrics

MASK_SALT = 0x6D6C6D  # Separates the masking draws from the dropout draws of the same step.


def mask_tokens(
    rng: jax.Array,
    ids: jax.Array,
    real: jax.Array,
    *,
    rate: float,
    mask_id: int,
    vocab_size: int,
    keep_ids: tuple[int, ...] = (),
) -> tuple[jax.Array, jax.Array]:
    """(the corrupted ids, the picked positions as float32 weights), both (B, T).

    `real` (B, T) bool marks the positions that may be picked; random replacements are drawn
    uniformly from 0..vocab_size-1 (the data's ids, without an appended mask id).
    """
    pick_key, kind_key, token_key = jax.random.split(rng, 3)
    eligible = real & ~jnp.isin(ids, jnp.asarray(keep_ids, ids.dtype)) if keep_ids else real
    picked = eligible & jax.random.bernoulli(pick_key, rate, ids.shape)
    kind = jax.random.uniform(kind_key, ids.shape)  # < 0.8: mask; < 0.9: random; else kept.
    random_ids = jax.random.randint(token_key, ids.shape, 0, vocab_size, ids.dtype)
    corrupted = jnp.where(kind < 0.8, jnp.asarray(mask_id, ids.dtype), ids)
    corrupted = jnp.where((kind >= 0.8) & (kind < 0.9), random_ids, corrupted)
    return jnp.where(picked, corrupted, ids), picked.astype(jnp.float32)


class MaskedLMTask(Task):
    def __init__(
        self,
        model: nn.Module,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        *,
        data_vocab: int,
        mask_id: int,
        rate: float,
        keep_ids: tuple[int, ...],
    ):
        self.model = model
        self.tx = tx
        self.learning_rate = learning_rate
        self.data_vocab = data_vocab
        self.mask_id = mask_id
        self.rate = rate
        self.keep_ids = keep_ids

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "MaskedLMTask":
        data_vocab = dataset.vocab_size
        if not data_vocab or "input" not in dataset.features:
            raise UserInputError(
                f"task.name='masked_lm' needs token ids in 'input'; dataset {dataset.name!r} "
                "declares no vocab_size. Use a text dataset."
            )
        rate = config.task.get("mask_rate", 0.15)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 < rate <= 1.0:
            raise UserInputError(f"task.mask_rate={rate!r} must be a number in (0, 1], e.g. 0.15.")
        mask_id = config.task.get("mask_id", -1)
        if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id >= data_vocab:
            raise UserInputError(
                f"task.mask_id={mask_id!r} must be an id below the dataset's vocab_size "
                f"{data_vocab}, or -1 to add a mask token after it."
            )
        vocab = data_vocab + 1 if mask_id < 0 else data_vocab
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(
            config.model, num_classes=vocab, vocab_size=vocab, batch_axis_name=batch_axis_name
        )
        if getattr(model, "head", "mlm") != "mlm":
            raise UserInputError(
                f"task.name='masked_lm' predicts every position; set model.head='mlm' (it is "
                f"{model.head!r})."
            )
        return cls(
            model,
            tx,
            learning_rate,
            data_vocab=data_vocab,
            mask_id=data_vocab if mask_id < 0 else mask_id,
            rate=float(rate),
            keep_ids=tuple(int(i) for i in config.task.get("keep_ids", ())),
        )

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        variables = self.model.init(
            {"params": init_rng, "dropout": dropout_rng},
            batch["input"],
            train=False,
            **model_kwargs(batch),
        )
        return TrainState.from_variables(variables, state_rng, self.model.apply, self.tx)

    def _masked(self, rng: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
        ids = batch["input"]
        if "length" in batch:
            real = jnp.arange(ids.shape[1])[None, :] < batch["length"][:, None]
        else:
            real = jnp.ones(ids.shape, bool)
        return mask_tokens(
            rng,
            ids,
            real,
            rate=self.rate,
            mask_id=self.mask_id,
            vocab_size=self.data_vocab,
            keep_ids=self.keep_ids,
        )

    def compute_grads(
        self, state: TrainState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, TrainState]:
        mutable = list(state.model_state)
        rng = state.step_rng()
        if micro_batch is not None:
            rng = jax.random.fold_in(rng, micro_batch)
        inputs, weights = self._masked(jax.random.fold_in(rng, MASK_SALT), batch)
        count = jnp.maximum(jnp.sum(weights), 1.0)

        def loss_fn(params):
            variables = {"params": params, **state.model_state}
            logits, new_model_state = state.apply_fn(
                variables,
                inputs,
                train=True,
                rngs={"dropout": rng},
                mutable=mutable,
                **model_kwargs(batch),
            )
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["input"])
            return jnp.sum(losses * weights) / count, (logits, new_model_state)

        (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        correct = jnp.argmax(logits, -1) == batch["input"]
        metrics = {"loss": loss, "accuracy": jnp.sum(correct * weights) / count}
        return grads, metrics, state.replace(model_state=dict(new_model_state))

    def apply_grads(
        self, state: TrainState, grads: Any, metrics: Metrics
    ) -> tuple[TrainState, Metrics]:
        return apply_grads_with_metrics(state, grads, metrics, self.learning_rate)

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        ids = batch["input"]
        # The same masks at every evaluation: the key is a function of the batch's contents.
        weights_of_ids = jnp.arange(1, ids.shape[1] + 1, dtype=jnp.uint32)[None, :]
        digest = jnp.sum(ids.astype(jnp.uint32) * weights_of_ids, dtype=jnp.uint32)
        inputs, weights = self._masked(jax.random.fold_in(jax.random.key(MASK_SALT), digest), batch)
        weights = weights * batch["mask"][:, None]
        variables = {"params": state.params, **state.model_state}
        logits = state.apply_fn(variables, inputs, train=False, **model_kwargs(batch))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, ids)
        correct = jnp.argmax(logits, -1) == ids
        return {
            "loss": jnp.sum(losses * weights),
            "accuracy": jnp.sum(correct * weights),
            "count": jnp.sum(weights),
        }
