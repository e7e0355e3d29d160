"""Graph networks: masked segment ops, permutation symmetry, padding invisibility, layer maths.

Runtime is almost all XLA compiling: eager ops compile once per shape, so every model here has
the same small widths and one of two pack budgets, and models of one layer kind share
executables. Each symmetry is checked within one pack (a graph next to its relabelled copy),
so each model runs once.
"""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdl.errors import UserInputError
from jaxdl.models import GNN, build_model, graph_ops
from jaxdl.models.gnn import LAYERS, POOLINGS, GCNLayer

NUM_CLASSES = 3
FEATURES = 8  # Node, edge and global features, and the hidden width: one width, fewer shapes.
SMALL = {"hidden": FEATURES, "num_layers": 2, "heads": 2}
BUDGET = (20, 28, 5)  # Nodes, edges and graph slots of the usual pack (18, 24, 4 real).
LOOSE = (27, 37, 8)  # The same graphs with more padding of every kind.
TOL = {"rtol": 1e-5, "atol": 1e-5}  # Sums in another order differ in the last float32 bits.


def random_graph(rng: np.random.Generator, num_nodes: int, num_pairs: int) -> dict:
    """An undirected graph (both directions stored) with random features and no self loops. Its
    last node is isolated: empty neighbourhoods are the edge case of every aggregation."""
    pairs = sorted(
        {tuple(sorted(rng.choice(num_nodes - 1, 2, replace=False))) for _ in range(num_pairs)}
    )
    senders = np.array([a for a, b in pairs] + [b for a, b in pairs], np.int32)
    receivers = np.array([b for a, b in pairs] + [a for a, b in pairs], np.int32)
    return {
        "nodes": rng.normal(size=(num_nodes, FEATURES)).astype(np.float32),
        "edges": rng.normal(size=(len(senders), FEATURES)).astype(np.float32),
        "globals": rng.normal(size=FEATURES).astype(np.float32),
        "senders": senders,
        "receivers": receivers,
    }


def relabel(graph: dict, perm: np.ndarray) -> dict:
    """The same graph with node i renamed perm[i]; the edges keep their order."""
    nodes = np.empty_like(graph["nodes"])
    nodes[perm] = graph["nodes"]
    senders, receivers = perm[graph["senders"]], perm[graph["receivers"]]
    return {**graph, "nodes": nodes, "senders": senders, "receivers": receivers}


def pack(graphs: list[dict], num_nodes: int, num_edges: int, num_graphs: int) -> dict:
    """Pack `graphs` into budgets of nodes, edges and graph slots, as the data pipeline does:
    the first spare slot owns all padding nodes and edges, which point at the last node."""
    real_nodes = sum(len(g["nodes"]) for g in graphs)
    real_edges = sum(len(g["senders"]) for g in graphs)
    assert real_nodes < num_nodes and real_edges <= num_edges and len(graphs) < num_graphs
    out = {
        "nodes": np.zeros((num_nodes, FEATURES), np.float32),
        "edges": np.zeros((num_edges, FEATURES), np.float32),
        "globals": np.zeros((num_graphs, FEATURES), np.float32),
        "senders": np.full(num_edges, num_nodes - 1, np.int32),
        "receivers": np.full(num_edges, num_nodes - 1, np.int32),
        "n_node": np.zeros(num_graphs, np.int32),
        "n_edge": np.zeros(num_graphs, np.int32),
        "labels": np.zeros(num_graphs, np.int32),  # An extra key the models must ignore.
    }
    node_at = edge_at = 0
    for index, g in enumerate(graphs):
        n, e = len(g["nodes"]), len(g["senders"])
        out["nodes"][node_at : node_at + n] = g["nodes"]
        out["edges"][edge_at : edge_at + e] = g["edges"]
        out["senders"][edge_at : edge_at + e] = g["senders"] + node_at
        out["receivers"][edge_at : edge_at + e] = g["receivers"] + node_at
        out["globals"][index] = g["globals"]
        out["n_node"][index], out["n_edge"][index] = n, e
        node_at, edge_at = node_at + n, edge_at + e
    out["n_node"][len(graphs)] = num_nodes - node_at
    out["n_edge"][len(graphs)] = num_edges - edge_at
    out["node_mask"] = (np.arange(num_nodes) < node_at).astype(np.float32)
    out["edge_mask"] = (np.arange(num_edges) < edge_at).astype(np.float32)
    out["graph_mask"] = (np.arange(num_graphs) < len(graphs)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def twins() -> dict:
    """Two graphs, then each again with its nodes relabelled; where each original node went.

    Graph 2 is graph 0 relabelled, graph 3 is graph 1; `moved[i]` is the pack row that node i
    (of graphs 0 and 1) has in the relabelled copies.
    """
    rng = np.random.default_rng(0)
    graphs = [random_graph(rng, 5, 5), random_graph(rng, 4, 3)]
    perms = [rng.permutation(len(g["nodes"])) for g in graphs]
    copies = [relabel(g, p) for g, p in zip(graphs, perms, strict=True)]
    sizes = np.cumsum([0] + [len(g["nodes"]) for g in graphs + copies])
    moved = np.concatenate([perm + start for perm, start in zip(perms, sizes[2:4], strict=True)])
    return {"graphs": graphs + copies, "moved": moved, "num_nodes": int(sizes[2])}


def _variables(model, *args, seed: int = 0) -> dict:
    """Random variables of the shapes `model.init` would give, drawn by numpy: running JAX's
    initialisers eagerly compiles a random-number kernel per parameter shape. Scale 0.5 keeps
    activations O(1) through a few layers."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.5 * rng.normal(size=s.shape)).astype(s.dtype), shapes)


def _run(model: GNN, batch: dict, variables: dict | None = None) -> tuple[np.ndarray, dict]:
    """Eager apply (a jit per model would compile each whole model again), results in numpy."""
    if variables is None:
        variables = _variables(model, batch)
    return np.asarray(model.apply(variables, batch)), variables


# Segment ops: four entries, the last a padding entry in segment 0; segment 2 is empty.
IDS = np.array([0, 0, 1, 0], np.int32)
MASK = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
DATA = np.array([[1.0, -2.0], [3.0, -4.0], [5.0, 6.0], [100.0, 100.0]], np.float32)


def test_segment_reductions_drop_padding_and_zero_empty_segments():
    for op, expected in (
        (graph_ops.segment_sum, [[4.0, -6.0], [5, 6], [0, 0]]),
        (graph_ops.segment_mean, [[2.0, -3.0], [5, 6], [0, 0]]),
        (graph_ops.segment_max, [[3.0, -2.0], [5, 6], [0, 0]]),
    ):
        np.testing.assert_allclose(op(DATA, IDS, 3, MASK), expected, err_msg=op.__name__)
    np.testing.assert_allclose(graph_ops.degree(IDS, 3, MASK), [2.0, 1.0, 0.0])
    # Without a mask every entry counts.
    np.testing.assert_allclose(graph_ops.segment_max(DATA, IDS, 3), [[100, 100], [5, 6], [0, 0]])


def test_segment_softmax_per_head_and_stable():
    # Two heads (the trailing axis), each the ordinary softmax over segment 0's real entries.
    weights = np.asarray(graph_ops.segment_softmax(DATA, IDS, 3, MASK))
    first = np.exp(DATA[:2]) / np.exp(DATA[:2]).sum(0)
    np.testing.assert_allclose(weights, [*first, [1, 1], [0, 0]], atol=1e-6)
    # Logits whose exp overflows float32: only their differences matter.
    weights = np.asarray(graph_ops.segment_softmax(DATA * 300, IDS, 3, MASK))
    np.testing.assert_allclose(weights, [[0, 1], [1, 0], [1, 1], [0, 0]], atol=1e-6)

    def total(x):
        weighted = graph_ops.segment_softmax(x, IDS, 3, MASK)[:, 0] * np.arange(4)
        return weighted.sum() + graph_ops.segment_max(x, IDS, 3, MASK).sum()

    # Gradients are finite, and none reaches the padding entry.
    grads = np.asarray(jax.jit(jax.grad(total))(DATA))
    assert np.all(np.isfinite(grads))
    np.testing.assert_array_equal(grads[3], [0, 0])


@pytest.mark.parametrize("layer", LAYERS)
def test_relabelling_nodes_permutes_node_outputs_and_keeps_graph_outputs(layer, twins):
    batch = pack(twins["graphs"], *BUDGET)
    n = twins["num_nodes"]
    nodes, _ = _run(GNN(NUM_CLASSES, layer=layer, **SMALL), batch)
    np.testing.assert_allclose(nodes[twins["moved"]], nodes[:n], **TOL)

    # Relabelling keeps the edge order, so each copy's edges match the original's in order.
    edges, _ = _run(GNN(NUM_CLASSES, layer=layer, readout="edge", **SMALL), batch)
    e = int(batch["n_edge"][:2].sum())
    np.testing.assert_allclose(edges[e : 2 * e], edges[:e], **TOL)

    # Only attention pooling has parameters (its gate), which the others' apply ignores: one set
    # of variables serves all four.
    variables = None
    for pooling in sorted(POOLINGS):  # "attention" first
        model = GNN(NUM_CLASSES, layer=layer, readout="graph", pooling=pooling, **SMALL)
        graphs, variables = _run(model, batch, variables)
        assert graphs.shape == (BUDGET[2], NUM_CLASSES)
        np.testing.assert_allclose(graphs[2:4], graphs[:2], **TOL, err_msg=pooling)
        assert not np.allclose(graphs[0], graphs[1])  # Two different graphs, two outputs.


# SAGE's max aggregator too: a max is where an unmasked padding entry would show most.
@pytest.mark.parametrize("layer", [*LAYERS, "sage_max"])
def test_padding_is_invisible(layer, twins):
    fields = {"layer": "sage", "aggregator": "max"} if layer == "sage_max" else {"layer": layer}
    usual, loose = pack(twins["graphs"], *BUDGET), pack(twins["graphs"], *LOOSE)
    n, e, g = (int(loose[mask].sum()) for mask in ("node_mask", "edge_mask", "graph_mask"))
    # Garbage in padding rows cannot leak either: the model masks its inputs.
    garbage = {key: value.copy() for key, value in loose.items()}
    garbage["nodes"][n:], garbage["edges"][e:], garbage["globals"][g:] = 1e4, np.nan, -1e4
    for readout, real in (("node", n), ("graph", g)):
        model = GNN(NUM_CLASSES, readout=readout, pooling="attention", **fields, **SMALL)
        reference, variables = _run(model, usual)
        for batch in (loose, garbage):
            out, _ = _run(model, batch, variables)
            np.testing.assert_allclose(out[:real], reference[:real], **TOL)
            assert not np.any(out[real:]), "padding rows must be zero"


def test_jumping_knowledge_residual_and_norm(twins):
    # GIN's graph classification setup (Xu et al. 2019), with every option on.
    model = GNN(
        NUM_CLASSES,
        layer="gin",
        readout="graph",
        pooling="max",
        jumping_knowledge=True,
        residual=True,
        norm="layer",
        **SMALL,
    )
    graphs, variables = _run(model, pack(twins["graphs"], *BUDGET))
    np.testing.assert_allclose(graphs[2:4], graphs[:2], **TOL)
    assert not np.any(graphs[4:]), "padding rows must be zero"
    # The head reads the input's and every layer's pooled node states.
    width = FEATURES + SMALL["num_layers"] * SMALL["hidden"]
    assert variables["params"]["head"]["kernel"].shape == (width, NUM_CLASSES)


def test_batch_norm_statistics_come_from_real_nodes_only(twins):
    model = GNN(NUM_CLASSES, layer="gin", readout="graph", norm="batch", **SMALL)
    usual, loose = pack(twins["graphs"], *BUDGET), pack(twins["graphs"], *LOOSE)
    variables = _variables(model, usual)
    variables["batch_stats"] = jax.tree.map(jnp.zeros_like, variables["batch_stats"])
    results = []
    for batch in (usual, loose):
        out, updates = model.apply(variables, batch, train=True, mutable=["batch_stats"])
        results.append((np.asarray(out), updates["batch_stats"]))
    real = len(twins["graphs"])
    np.testing.assert_allclose(results[1][0][:real], results[0][0][:real], **TOL)
    chex.assert_trees_all_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)
    # Evaluation uses the running statistics, so a graph's output does not depend on its pack.
    alone = np.asarray(model.apply(variables, pack(twins["graphs"][:1], *BUDGET)))
    together = np.asarray(model.apply(variables, usual))
    np.testing.assert_allclose(alone[0], together[0], **TOL)


def test_batch_norm_of_a_state_that_is_the_same_on_every_node_stays_stable(twins):
    """Constant node features through layers blind to the graph: training normalises exact
    zeros, and evaluation, with running statistics a few bits off, must not blow that up."""
    model = GNN(NUM_CLASSES, layer="mlp", readout="graph", norm="batch", **SMALL)
    batch = pack(twins["graphs"], *BUDGET)
    batch["nodes"] = np.where(batch["node_mask"][:, None] > 0, 2.0, 0.0).astype(np.float32)
    variables = _variables(model, batch)
    stats = {
        layer: {"mean": np.zeros_like(v["mean"]), "var": np.ones_like(v["var"])}
        for layer, v in variables["batch_stats"].items()
    }
    step = jax.jit(
        lambda stats: model.apply(
            {**variables, "batch_stats": stats}, batch, train=True, mutable=["batch_stats"]
        )
    )
    for _ in range(300):  # The running statistics settle on this batch's, up to rounding.
        train_out, updates = step(stats)
        stats = updates["batch_stats"]
    eval_out = model.apply({**variables, "batch_stats": stats}, batch)
    real = len(twins["graphs"])
    np.testing.assert_allclose(np.asarray(eval_out)[:real], np.asarray(train_out)[:real], atol=1e-2)


def test_gat_attention_sums_to_one_over_incoming_edges_and_self_loop(twins):
    batch = pack(twins["graphs"], *BUDGET)
    model = GNN(NUM_CLASSES, layer="gat", **SMALL)
    _, sown = model.apply(_variables(model, batch), batch, mutable=["intermediates"])
    real_node, real_edge = batch["node_mask"] > 0, batch["edge_mask"] > 0
    lonely = np.setdiff1d(np.flatnonzero(real_node), batch["receivers"])
    assert len(lonely) == 4  # One isolated node per graph.
    for index in range(SMALL["num_layers"]):
        sown_layer = sown["intermediates"][f"gat_{index}"]
        (edge_w,), (self_w,) = sown_layer["edge_attention"], sown_layer["self_attention"]
        edge_w, self_w = np.asarray(edge_w), np.asarray(self_w)
        assert edge_w.shape == (BUDGET[1], SMALL["heads"])
        assert self_w.shape == (BUDGET[0], SMALL["heads"])
        incoming = self_w.copy()
        np.add.at(incoming, batch["receivers"], edge_w)
        np.testing.assert_allclose(incoming[real_node], 1.0, atol=1e-6)
        assert np.all(edge_w >= 0) and np.all(self_w >= 0)
        assert not np.any(edge_w[~real_edge]) and not np.any(self_w[~real_node])
        np.testing.assert_allclose(self_w[lonely], 1.0)  # Only itself to attend to.


def test_gin_eps_is_a_parameter(twins):
    batch = pack(twins["graphs"], *BUDGET)
    model = GNN(NUM_CLASSES, layer="gin", readout="graph", **SMALL)
    before, variables = _run(model, batch)
    assert variables["params"]["gin_0"]["eps"].shape == ()
    # A parameter the output depends on (so it gets a gradient), not a constant.
    params = variables["params"]
    moved = {**params, "gin_0": {**params["gin_0"], "eps": params["gin_0"]["eps"] + 0.5}}
    after, _ = _run(model, batch, {"params": moved})
    assert not np.allclose(after[:4], before[:4])
    fixed = _variables(GNN(NUM_CLASSES, layer="gin", learn_eps=False, **SMALL), batch)
    assert "eps" not in fixed["params"]["gin_0"]


def test_gcn_matches_the_normalised_adjacency_by_hand():
    # A path 0 - 1 - 2 stored in both directions, in a pack with padding.
    graph = {
        "nodes": np.arange(3 * FEATURES, dtype=np.float32).reshape(3, -1) / 10,
        "edges": np.ones((4, FEATURES), np.float32),
        "globals": np.zeros(FEATURES, np.float32),
        "senders": np.array([0, 1, 1, 2], np.int32),
        "receivers": np.array([1, 0, 2, 1], np.int32),
    }
    batch = pack([graph], *BUDGET)
    layer = GCNLayer(features=FEATURES)
    params = _variables(layer, batch["nodes"], batch)["params"]
    assert set(params) == {"Dense_0", "bias"}
    kernel, bias = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["bias"])
    out = np.asarray(layer.apply({"params": params}, batch["nodes"], batch))

    adjacency_plus_self = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], np.float32)
    inv_sqrt = np.diag(adjacency_plus_self.sum(1) ** -0.5)
    expected = inv_sqrt @ adjacency_plus_self @ inv_sqrt @ graph["nodes"] @ kernel + bias
    np.testing.assert_allclose(out[:3], expected, **TOL)


def test_dropout_only_in_training(twins):
    batch = pack(twins["graphs"], *BUDGET)
    model = GNN(NUM_CLASSES, layer="gcn", dropout=0.5, input_dropout=0.2, **SMALL)
    evaluated, variables = _run(model, batch)
    np.testing.assert_array_equal(_run(model, batch, variables)[0], evaluated)
    trained = model.apply(variables, batch, train=True, rngs={"dropout": jax.random.key(1)})
    assert np.all(np.isfinite(trained)) and not np.allclose(trained, evaluated)


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"layer": "gnc"}, r"model\.layer='gnc'.*Did you mean:.*gcn"),
        ({"readout": "nodes"}, r"model\.readout='nodes'"),
        ({"pooling": "avg"}, r"model\.pooling='avg'"),
        ({"aggregator": "lstm"}, r"model\.aggregator='lstm'"),
        ({"norm": "group"}, r"model\.norm='group'"),
        ({"layer": "gat", "hidden": 10, "heads": 4}, r"model\.hidden=10.*model\.heads=4"),
        ({"num_layers": 0}, r"model\.num_layers=0"),
    ],
)
def test_bad_fields_name_the_field(fields, pattern):
    # A ValueError, and the repo's UserInputError so the CLI reports it as bad input.
    with pytest.raises(ValueError, match=pattern) as error:
        GNN(NUM_CLASSES, **fields)
    assert isinstance(error.value, UserInputError)


def test_built_by_name_from_the_config():
    config = ml_collections.ConfigDict({"name": "gnn", "layer": "sage", "aggregator": "max"})
    model = build_model(config, num_classes=NUM_CLASSES)
    assert isinstance(model, GNN)
    assert (model.num_classes, model.layer, model.aggregator) == (NUM_CLASSES, "sage", "max")
