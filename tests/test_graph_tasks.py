"""The graph tasks' steps on small packs: they learn, and their metrics count real items only.

(The CLI runs of every task are in test_graph_runs.py: link prediction and graph
classification in `make test`, the others in `make test-all`.)
"""

import jax
import numpy as np
import pytest

from jaxdl.config import graph_config
from jaxdl.data.graph_pipeline import GraphBatching, GraphRecords
from jaxdl.data.graph_sources import declared_features
from jaxdl.data.spec import DatasetSpec
from jaxdl.tasks import build_task


def random_graphs(count: int, seed: int, kind: str) -> list[dict[str, np.ndarray]]:
    """Graphs whose targets a GNN can read off its neighbourhoods."""
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(count):
        n = int(rng.integers(4, 9))
        senders = rng.integers(0, n, 2 * n).astype(np.int32)
        receivers = rng.integers(0, n, 2 * n).astype(np.int32)
        nodes = rng.normal(size=(n, 3)).astype(np.float32)
        graph = {
            "nodes": nodes,
            "edges": np.ones((2 * n, 1), np.float32),
            "senders": senders,
            "receivers": receivers,
            "globals": np.zeros(1, np.float32),
        }
        if kind == "node":  # The sign of the node's first feature; half the nodes labelled.
            graph["node_label"] = (nodes[:, 0] > 0).astype(np.int32)
            graph["label_mask"] = (rng.random(n) < 0.5).astype(np.float32)
        elif kind == "regression":  # How many edges the graph has.
            graph["target"] = np.array([len(senders) / 8.0], np.float32)
        else:  # Three binary labels, some missing: the first feature's sum, noise, noise.
            labels = np.array([nodes[:, 0].sum() > 0, *rng.integers(0, 2, 2)], np.float32)
            graph["label"] = np.where(rng.random(3) < 0.3, np.nan, labels).astype(np.float32)
        graphs.append(graph)
    if kind == "multi_label":
        for graph in graphs:
            graph["label_mask"] = np.isfinite(graph["label"]).astype(np.float32)
            graph["label"] = np.nan_to_num(graph["label"])
    return graphs


def make(kind: str, task: str, readout: str, num_classes: int, layer: str):
    graphs = {name: random_graphs(60, seed, kind) for seed, name in enumerate(SPLITS)}
    features = declared_features(graphs["train"][0])
    records = {name: GraphRecords(split, features) for name, split in graphs.items()}
    spec = DatasetSpec(
        name=f"random_{kind}",
        splits=records,
        preprocess=lambda graph: graph,
        input_shape=(3,),
        num_classes=num_classes,
        batching=GraphBatching(features, records),
    )
    config = graph_config(spec.name, task, readout, layer=layer, batch_size=16)
    config.model.hidden = 16
    config.train.num_steps = 200
    return build_task(config, spec), spec


SPLITS = ("train", "validation", "test")


@pytest.mark.parametrize(
    ("kind", "task", "readout", "classes", "layer", "metric", "better"),
    [
        # GraphSAGE keeps a node's own state apart from its neighbours' mean.
        ("node", "node_classification", "node", 2, "sage", "accuracy", 0.8),
        ("regression", "graph_regression", "graph", 0, "gin", "mae", 0.1),
        ("multi_label", "graph_classification", "graph", 3, "gin", "average_precision", 0.6),
    ],
)
def test_task_learns_and_evaluates_real_items_only(
    kind, task, readout, classes, layer, metric, better
):
    graph_task, spec = make(kind, task, readout, classes, layer)
    iterator = spec.batching.train_iterator(spec.splits["train"], batch_size=16, seed=0)
    state = jax.jit(graph_task.init_state)(jax.random.PRNGKey(0), next(iterator))
    step = jax.jit(graph_task.train_step)
    for _ in range(200):
        state, metrics = step(state, next(iterator))
    assert 0 < float(metrics["pack_graphs"]) <= 16 and 0 < float(metrics["pack_node_fill"]) <= 1
    evaluate = jax.jit(graph_task.eval_step)
    sums = None
    for batch in spec.batching.eval_batches(spec.splits["test"], batch_size=16):
        out = jax.device_get(evaluate(state, batch))
        sums = out if sums is None else jax.tree.map(np.add, sums, out)
    if kind == "node":  # Labelled nodes; the other tasks count graphs.
        assert float(sums["count"]) == sum(
            g["label_mask"].sum() for g in spec.splits["test"].graphs
        )
    else:
        assert float(sums["count"]) == 60
    result = graph_task.finalize_eval(
        {k: float(v) if np.ndim(v) == 0 else v for k, v in sums.items()}
    )
    if metric == "mae":
        assert result["mae"] < better  # Targets are n / 4 for n in 4..8: the mean is ~0.3 off.
    else:
        assert result[metric] > better
