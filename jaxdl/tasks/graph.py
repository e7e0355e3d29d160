"""Graph tasks: node classification, graph classification and graph regression.

Batches are packs of graphs (jaxdl/data/graphs.py): one padded disjoint graph with node, edge
and graph masks. The model (models/gnn.py) takes the whole pack and returns one row per node or
per graph slot; the task weighs each row by what is real and labelled:

- node classification: `node_label` (N,) and `label_mask` (N,), the nodes whose labels count in
  this split (semi-supervised: a few labelled nodes in train, the others in test);
- graph classification: `label` (G,) int32, or multi-label `label` (G, T) float32 with
  `label_mask` (G, T) for missing labels (ogbg_molpcba), scored by average precision;
- graph regression: `target` (G, K) float32, mean squared error; `mae` is what is reported.

One gradient per step (compute_grads/apply_grads), so the non-finite guard works as for any
task; a pack cannot be split into micro-batches along one axis, so setup refuses gradient
accumulation and shard_map mode for graph datasets.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jaxdl import optim
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.tasks.base import Batch, Metrics, Task
from jaxdl.tasks.state import TrainState, apply_grads_with_metrics

_EVAL_KEY_SALT = 0x11A7
# Average precision from score histograms: a sum over eval batches, like every other metric.
# Bins are uniform in logit space, so ranking stays fine where rare positives compete.
AP_BINS = 2000
AP_LOGIT_RANGE = 12.0


class GraphTask(Task):
    """What the graph tasks share: a GNN over the pack, one optimizer, TrainState."""

    readout = "node"
    needs: tuple[str, ...] = ()  # Keys the dataset's graphs must have.

    def __init__(self, model: nn.Module, tx: optax.GradientTransformation, learning_rate: Any):
        self.model = model
        self.tx = tx
        self.learning_rate = learning_rate

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "GraphTask":
        del batch_axis_name  # Packs are never split per device (see the module docstring).
        check_graph_setup(config, dataset, cls.readout, cls.needs)
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(config.model, num_classes=cls.outputs(config, dataset))
        return cls(model, tx, learning_rate)

    @classmethod
    def outputs(cls, config: ml_collections.ConfigDict, dataset: Any) -> int:
        del config
        return dataset.num_classes

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        variables = self.model.init({"params": init_rng, "dropout": dropout_rng}, batch)
        return TrainState.from_variables(variables, state_rng, self.model.apply, self.tx)

    def sums(self, outputs: jax.Array, batch: Batch, key: jax.Array) -> Metrics:
        """Sums over one pack's real, labelled items, with 'loss' and 'count'; `key` for tasks
        that draw (link prediction's negatives)."""
        raise NotImplementedError

    def eval_extras(self, outputs: jax.Array, batch: Batch) -> Metrics:
        """Sums that only evaluation reports (e.g. average precision's histograms)."""
        del outputs, batch
        return {}

    def objective(
        self, outputs: jax.Array, batch: Batch, key: jax.Array
    ) -> tuple[jax.Array, Metrics]:
        """(mean loss, every sum as a mean over `count`) of one pack."""
        sums = self.sums(outputs, batch, key)
        count = jnp.maximum(sums["count"], 1.0)
        means = {name: value / count for name, value in sums.items() if name != "count"}
        return means["loss"], means

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        # A fixed key: every evaluation draws the same (link prediction's negatives).
        key = jax.random.fold_in(state.rng, _EVAL_KEY_SALT)
        outputs = self.predict(state, batch)
        return {**self.sums(outputs, batch, key), **self.eval_extras(outputs, batch)}

    def compute_grads(
        self, state: TrainState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, TrainState]:
        del micro_batch  # Never split (setup refuses gradient accumulation for packs).
        dropout_key, task_key = jax.random.split(state.step_rng())
        mutable = list(state.model_state)  # Batch-norm statistics, when the model has them.

        def loss_fn(params):
            variables = {"params": params, **state.model_state}
            outputs, new_model_state = state.apply_fn(
                variables, batch, train=True, rngs={"dropout": dropout_key}, mutable=mutable
            )
            loss, metrics = self.objective(outputs, batch, task_key)
            return loss, (metrics, new_model_state)

        (_, (metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        # How full the packs run: graphs per step and the share of the node budget used.
        metrics["pack_graphs"] = jnp.sum(batch["graph_mask"])
        metrics["pack_node_fill"] = jnp.mean(batch["node_mask"])
        return grads, metrics, state.replace(model_state=dict(new_model_state))

    def apply_grads(
        self, state: TrainState, grads: Any, metrics: Metrics
    ) -> tuple[TrainState, Metrics]:
        return apply_grads_with_metrics(state, grads, metrics, self.learning_rate)

    def predict(self, state: TrainState, batch: Batch) -> jax.Array:
        variables = {"params": state.params, **state.model_state}
        return state.apply_fn(variables, batch, train=False)


class NodeClassificationTask(GraphTask):
    """Cross-entropy on the labelled nodes of each split (`label_mask`)."""

    readout = "node"
    needs = ("node_label", "label_mask")

    def sums(self, logits: jax.Array, batch: Batch, key: jax.Array) -> Metrics:
        del key
        weights = batch["label_mask"] * batch["node_mask"]
        labels = batch["node_label"]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = jnp.argmax(logits, -1) == labels
        return {
            "loss": jnp.sum(losses * weights),
            "accuracy": jnp.sum(correct * weights),
            "count": jnp.sum(weights),
        }


class GraphClassificationTask(GraphTask):
    """One class per graph (cross-entropy, accuracy), or several binary labels per graph with
    some missing (sigmoid cross-entropy, average precision over the labels that have both
    classes: the ogbg_molpcba metric)."""

    readout = "graph"
    needs = ("label",)
    multi_label = False  # Set from the dataset: `label` (T,) per graph.

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "GraphTask":
        task = super().from_config(config, dataset, batch_axis_name)
        task.multi_label = len(dataset.features["label"].shape) == 1
        return task

    def sums(self, logits: jax.Array, batch: Batch, key: jax.Array) -> Metrics:
        del key
        weights = batch["graph_mask"]
        if not self.multi_label:
            labels = batch["label"]
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            correct = jnp.argmax(logits, -1) == labels
            return {
                "loss": jnp.sum(losses * weights),
                "accuracy": jnp.sum(correct * weights),
                "count": jnp.sum(weights),
            }
        label_weights = _label_weights(batch)
        losses = optax.sigmoid_binary_cross_entropy(logits, batch["label"])
        # Loss per graph: the mean over its labelled tasks, so `count` stays graphs.
        per_graph = jnp.sum(losses * label_weights, -1) / jnp.maximum(
            jnp.sum(label_weights, -1), 1.0
        )
        return {"loss": jnp.sum(per_graph), "count": jnp.sum(weights)}

    def eval_extras(self, logits: jax.Array, batch: Batch) -> Metrics:
        if not self.multi_label:
            return {}
        histograms = score_histograms(logits, batch["label"], _label_weights(batch))
        return {"average_precision": histograms}

    def finalize_eval(self, sums: dict[str, Any]) -> dict[str, float]:
        histograms = sums.pop("average_precision", None)
        metrics = super().finalize_eval(sums)
        if histograms is not None:
            metrics["average_precision"] = average_precision(histograms)
        return metrics


class GraphRegressionTask(GraphTask):
    """Mean squared error on `target` (G, K); reports `mae` and `mse` per graph and target."""

    readout = "graph"
    needs = ("target",)

    @classmethod
    def outputs(cls, config: ml_collections.ConfigDict, dataset: Any) -> int:
        return math.prod(dataset.features["target"].shape)

    def sums(self, outputs: jax.Array, batch: Batch, key: jax.Array) -> Metrics:
        del key
        error, weights = _errors(outputs, batch)
        return {
            "loss": jnp.sum(jnp.square(error) * weights),
            "mae": jnp.sum(jnp.abs(error) * weights),
            "count": jnp.sum(weights) * outputs.shape[-1],
        }

    def eval_extras(self, outputs: jax.Array, batch: Batch) -> Metrics:
        error, weights = _errors(outputs, batch)  # The loss again, under its own name.
        return {"mse": jnp.sum(jnp.square(error) * weights)}


def _errors(outputs: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """Prediction minus target (G, K), and which rows are real graphs (G, 1)."""
    return outputs - batch["target"].reshape(outputs.shape), batch["graph_mask"][:, None]


def _label_weights(batch: Batch) -> jax.Array:
    """(G, T): 1 where a real graph has label t (multi-label graph classification)."""
    return batch["label_mask"] * batch["graph_mask"][:, None]


def score_histograms(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """(2, T, AP_BINS): per task, how many labelled negatives (row 0) and positives (row 1)
    fall in each logit bin. Summed over batches, they give average precision."""
    scaled = (jnp.clip(logits, -AP_LOGIT_RANGE, AP_LOGIT_RANGE) + AP_LOGIT_RANGE) / (
        2 * AP_LOGIT_RANGE
    )
    bins = jnp.minimum((scaled * AP_BINS).astype(jnp.int32), AP_BINS - 1)
    tasks = logits.shape[-1]
    flat = bins + AP_BINS * jnp.arange(tasks)[None, :]
    positive = (labels > 0.5).astype(jnp.float32) * weights
    negative = (labels <= 0.5).astype(jnp.float32) * weights

    def per_bin(weights: jax.Array) -> jax.Array:
        return jax.ops.segment_sum(
            weights.reshape(-1), flat.reshape(-1), num_segments=tasks * AP_BINS
        )

    return jnp.stack([per_bin(negative), per_bin(positive)]).reshape(2, tasks, AP_BINS)


def average_precision(histograms: Any) -> float:
    """Mean over tasks with both a positive and a negative label of the area under each
    task's precision-recall steps, thresholds at the bin edges (high scores first)."""
    negatives, positives = np.asarray(histograms, np.float64)
    true_pos = np.cumsum(positives[:, ::-1], axis=1)
    false_pos = np.cumsum(negatives[:, ::-1], axis=1)
    total_pos = true_pos[:, -1]
    valid = (total_pos > 0) & (false_pos[:, -1] > 0)
    if not valid.any():
        return float("nan")
    precision = true_pos / np.maximum(true_pos + false_pos, 1.0)
    recall_steps = positives[:, ::-1] / np.maximum(total_pos[:, None], 1.0)
    per_task = np.sum(precision * recall_steps, axis=1)
    return float(per_task[valid].mean())


def check_graph_setup(
    config: ml_collections.ConfigDict, dataset: Any, readout: str, needs: tuple[str, ...]
) -> None:
    """Clear errors for a graph task on the wrong data or model."""
    task = config.task.name
    if dataset.batching is None:
        raise UserInputError(
            f"task.name={task!r} needs a graph dataset (packs of graphs), but data.name="
            f"{config.data.name!r} is not one; see `jaxdl list` for graph datasets."
        )
    missing = [key for key in needs if key not in dataset.features]
    if missing:
        raise UserInputError(
            f"task.name={task!r} needs graphs with {', '.join(needs)}, but data.name="
            f"{config.data.name!r} has no {', '.join(missing)}; pick a dataset made for it."
        )
    if config.model.get("name") != "gnn":
        raise UserInputError(
            f"task.name={task!r} needs model.name='gnn', got {config.model.get('name')!r}."
        )
    if config.model.get("readout", "node") != readout:
        raise UserInputError(
            f"model.readout={config.model.get('readout', 'node')!r}: task {task!r} reads one "
            f"output per {readout}; set model.readout={readout!r}."
        )
