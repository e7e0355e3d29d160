"""Link prediction: score node pairs by the dot product of their GNN embeddings.

The pack's edges are the graph messages pass over; `link_senders`/`link_receivers` (L,) are the
positive pairs to score (in train, the message edges themselves; in validation and test, edges
held out of the message graph). Each positive gets `task.negatives` negatives by corrupting its
receiver with a uniformly drawn node of the same graph: drawn from the step key in training, and
from a fixed key in evaluation, so every evaluation scores the same pairs.

Reported: the binary cross-entropy, `accuracy` (a positive scored > 0, a negative < 0) and
`auc`, the probability that a positive outscores a negative of the same pack (area under the
ROC curve, exact within a pack; a full-graph split is one pack).
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl.errors import UserInputError
from jaxdl.tasks.base import Batch, Metrics
from jaxdl.tasks.graph import GraphTask


class LinkPredictionTask(GraphTask):
    readout = "node"
    needs = ("link_senders", "link_receivers")

    def __init__(self, model: Any, tx: Any, learning_rate: Any, negatives: int = 1):
        super().__init__(model, tx, learning_rate)
        self.negatives = negatives

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "LinkPredictionTask":
        task = super().from_config(config, dataset, batch_axis_name)
        negatives = config.task.get("negatives", 1)
        if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 1:
            raise UserInputError(
                f"task.negatives={negatives!r} must be an integer >= 1 (negatives per positive)."
            )
        task.negatives = negatives
        return task

    @classmethod
    def outputs(cls, config: ml_collections.ConfigDict, dataset: Any) -> int:
        size = config.task.get("embedding_dim", 64)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UserInputError(f"task.embedding_dim={size!r} must be a positive integer.")
        return size

    def sums(self, embeddings: jax.Array, batch: Batch, key: jax.Array) -> Metrics:
        senders, receivers = batch["link_senders"], batch["link_receivers"]
        weights = batch["link_mask"]
        negatives = corrupted_receivers(batch, senders, self.negatives, key)
        positive = _scores(embeddings, senders, receivers)
        negative = _scores(embeddings, senders[:, None], negatives)  # (L, k)
        loss = optax.sigmoid_binary_cross_entropy(positive, 1.0) + jnp.mean(
            optax.sigmoid_binary_cross_entropy(negative, 0.0), axis=-1
        )
        correct = ((positive > 0) + jnp.mean(negative < 0, axis=-1)) / 2.0
        auc = pairwise_auc(
            positive, negative.reshape(-1), weights, jnp.repeat(weights, self.negatives)
        )
        count = jnp.sum(weights)
        return {
            "loss": jnp.sum(loss * weights),
            "accuracy": jnp.sum(correct * weights),
            "auc": auc * count,
            "count": count,
        }


def corrupted_receivers(batch: Batch, senders: jax.Array, k: int, key: jax.Array) -> jax.Array:
    """(L, k) nodes drawn uniformly from the graph of each link's sender."""
    n_node = batch["n_node"]
    num_nodes = batch["node_mask"].shape[0]
    graph_of_node = jnp.repeat(jnp.arange(n_node.shape[0]), n_node, total_repeat_length=num_nodes)
    first_node = jnp.cumsum(n_node) - n_node
    graph = graph_of_node[senders]
    draws = jax.random.uniform(key, (senders.shape[0], k))
    offsets = jnp.floor(draws * n_node[graph][:, None]).astype(jnp.int32)
    return first_node[graph][:, None] + jnp.minimum(offsets, n_node[graph][:, None] - 1)


def pairwise_auc(
    positive: jax.Array, negative: jax.Array, positive_mask: jax.Array, negative_mask: jax.Array
) -> jax.Array:
    """P(a real positive scores above a real negative), ties counting half, from one sort."""
    real = jnp.concatenate([positive_mask, negative_mask]) > 0
    is_negative = jnp.concatenate([jnp.zeros(positive.shape, bool), jnp.ones(negative.shape, bool)])
    # Padding sorts below every real score and is neither a positive nor a negative.
    scores = jnp.where(real, jnp.concatenate([positive, negative]), -jnp.inf)
    order = jnp.argsort(scores)
    scores = scores[order]
    negatives = (real & is_negative)[order].astype(jnp.float32)
    positives = (real & ~is_negative)[order].astype(jnp.float32)
    negatives_before = jnp.concatenate([jnp.zeros(1), jnp.cumsum(negatives)])
    below = negatives_before[jnp.searchsorted(scores, scores, side="left")]
    tied = negatives_before[jnp.searchsorted(scores, scores, side="right")] - below
    wins = jnp.sum((below + 0.5 * tied) * positives)
    return wins / jnp.maximum(jnp.sum(positives) * jnp.sum(negatives), 1.0)


def _scores(embeddings: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
    return jnp.sum(embeddings[senders] * embeddings[receivers], axis=-1)
