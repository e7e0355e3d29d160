"""The graph tasks' metrics against independent computations (scikit-learn)."""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from jaxdl.tasks.graph import average_precision, score_histograms
from jaxdl.tasks.link_prediction import corrupted_receivers, pairwise_auc


def test_average_precision_from_histograms_matches_sklearn_over_batches() -> None:
    rng = np.random.default_rng(0)
    graphs, tasks = 600, 5
    labels = (rng.random((graphs, tasks)) < [0.02, 0.1, 0.3, 0.5, 0.0]).astype(np.float32)
    logits = (labels * 1.5 + rng.normal(size=labels.shape)).astype(np.float32)
    present = (rng.random(labels.shape) > 0.2).astype(np.float32)  # Missing labels.
    # Summed over three batches, as the eval loop does (one compiled shape: jitted, as there).
    histogram = jax.jit(score_histograms)
    histograms = sum(
        np.asarray(histogram(logits[s], labels[s], present[s]))
        for s in (slice(0, 200), slice(200, 400), slice(400, None))
    )
    expected = []
    for task in range(tasks):
        keep = present[:, task] > 0
        y = labels[keep, task]
        if 0 < y.sum() < len(y):  # OGB: tasks with both a positive and a negative label.
            expected.append(average_precision_score(y, logits[keep, task]))
    assert len(expected) == 4  # The all-negative task is left out.
    np.testing.assert_allclose(average_precision(histograms), np.mean(expected), atol=2e-3)


def test_pairwise_auc_matches_sklearn_and_ignores_padding() -> None:
    rng = np.random.default_rng(1)
    positive = rng.normal(1.0, 1.0, 50).astype(np.float32)
    negative = rng.normal(0.0, 1.0, 80).astype(np.float32)
    negative[:10] = positive[:10]  # Ties count half.
    pos_mask = np.ones(50, np.float32)
    neg_mask = np.ones(80, np.float32)
    pos_mask[45:], neg_mask[70:] = 0.0, 0.0
    positive[45:], negative[70:] = 100.0, 100.0  # Padding with scores that would matter.
    auc = float(jax.jit(pairwise_auc)(positive, negative, pos_mask, neg_mask))
    scores = np.concatenate([positive[:45], negative[:70]])
    truth = np.concatenate([np.ones(45), np.zeros(70)])
    np.testing.assert_allclose(auc, roc_auc_score(truth, scores), rtol=1e-6)


def test_negatives_are_drawn_from_the_graph_of_their_sender() -> None:
    n_node = jnp.array([3, 5, 2, 6])  # The last slot is padding.
    batch = {"n_node": n_node, "node_mask": jnp.zeros(16)}
    senders = jnp.array([0, 2, 3, 7, 8, 9])
    draw = jax.jit(corrupted_receivers, static_argnums=2)
    drawn = np.asarray(draw(batch, senders, 50, jax.random.PRNGKey(0)))
    graph_bounds = {0: (0, 3), 2: (0, 3), 3: (3, 8), 7: (3, 8), 8: (8, 10), 9: (8, 10)}
    for row, sender in enumerate(np.asarray(senders)):
        low, high = graph_bounds[int(sender)]
        assert drawn[row].min() >= low and drawn[row].max() < high
        assert len(set(drawn[row].tolist())) == high - low  # Every node of the graph is drawn.
