"""Packing graphs into fixed-size batches: round trip, budgets, the train stream and resume."""

import numpy as np
import pytest

from jaxdl.data.graph_pipeline import GraphBatching, GraphRecords
from jaxdl.data.graphs import Budgets, GraphFeature, budgets_for, pack, pack_count, unpack
from jaxdl.errors import UserInputError

FEATURES = {
    "nodes": GraphFeature("node", (3,), "float32"),
    "edges": GraphFeature("edge", (1,), "float32"),
    "senders": GraphFeature("edge", (), "int32", index=True),
    "receivers": GraphFeature("edge", (), "int32", index=True),
    "globals": GraphFeature("graph", (1,), "float32"),
    "label": GraphFeature("graph", (), "int32"),
}


def random_graph(rng: np.random.Generator, label: int) -> dict[str, np.ndarray]:
    nodes = int(rng.integers(2, 9))
    edges = int(rng.integers(0, 2 * nodes))
    return {
        "nodes": rng.normal(size=(nodes, 3)).astype(np.float32),
        "edges": rng.normal(size=(edges, 1)).astype(np.float32),
        "senders": rng.integers(0, nodes, edges).astype(np.int32),
        "receivers": rng.integers(0, nodes, edges).astype(np.int32),
        "globals": rng.normal(size=1).astype(np.float32),
        "label": np.int32(label),
    }


def graphs(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [random_graph(rng, i) for i in range(count)]


def batching(train: int = 40, max_nodes: int = 0) -> GraphBatching:
    splits = {
        name: GraphRecords(graphs(size, seed), FEATURES)
        for name, size, seed in (("train", train, 0), ("validation", 9, 1), ("test", 11, 2))
    }
    return GraphBatching(FEATURES, splits, max_nodes=max_nodes)


def test_pack_then_unpack_gives_the_graphs_back() -> None:
    original = graphs(5)
    batch = pack(original, FEATURES, Budgets(nodes=64, edges=96, graphs=8, max_graphs=6))
    assert batch["nodes"].shape == (64, 3) and batch["senders"].shape == (96,)
    assert batch["n_node"].shape == (8,) and batch["label"].shape == (8,)
    for got, want in zip(unpack(batch, FEATURES), original, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(unpack(batch, FEATURES)[3]["label"], 3)


def test_padding_is_masked_and_attached_to_a_padding_node() -> None:
    original = graphs(3)
    budgets = Budgets(nodes=40, edges=48, graphs=8, max_graphs=7)
    batch = pack(original, FEATURES, budgets)
    real_nodes = sum(len(g["nodes"]) for g in original)
    real_edges = sum(len(g["senders"]) for g in original)
    assert batch["node_mask"].sum() == real_nodes and batch["edge_mask"].sum() == real_edges
    np.testing.assert_array_equal(batch["graph_mask"], [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["mask"], batch["graph_mask"])
    # Every node and edge belongs to a slot; padding ones to the first padding slot.
    assert batch["n_node"].sum() == 40 and batch["n_edge"].sum() == 48
    assert batch["n_node"][3] == 40 - real_nodes and batch["n_node"][4:].sum() == 0
    assert np.all(batch["senders"][real_edges:] == 39)
    assert np.all(batch["receivers"][real_edges:] == 39)
    assert not batch["nodes"][real_nodes:].any()
    # Real edges stay inside their own graph's node block.
    starts = np.cumsum(np.concatenate([[0], batch["n_node"]]))
    edge_graph = np.repeat(np.arange(8), batch["n_edge"])
    for key in ("senders", "receivers"):
        for edge in range(real_edges):
            g = edge_graph[edge]
            assert starts[g] <= batch[key][edge] < starts[g + 1]


def test_the_example_batch_is_all_padding_with_the_budgets_shapes() -> None:
    spec = batching()
    example = spec.example_batch(6)
    budgets = spec.budgets(6)
    assert example["nodes"].shape == (budgets.nodes, 3)
    assert example["senders"].shape == (budgets.edges,)
    assert example["label"].shape == (budgets.graphs,)
    assert not example["graph_mask"].any() and not example["node_mask"].any()
    assert example["n_node"][0] == budgets.nodes


def test_pack_count_stops_at_the_first_graph_that_does_not_fit() -> None:
    sizes = np.array([[5, 4, 0], [5, 4, 0], [5, 20, 0], [1, 0, 0]])
    budgets = Budgets(nodes=16, edges=24, graphs=8, max_graphs=7)
    assert pack_count(sizes, budgets) == 2  # The third graph's edges overflow.
    assert pack_count(sizes[:2], budgets) == 2
    assert pack_count(sizes, Budgets(nodes=11, edges=100, graphs=8, max_graphs=7)) == 2
    assert pack_count(sizes, Budgets(nodes=100, edges=100, graphs=3, max_graphs=2)) == 2
    with pytest.raises(ValueError, match="does not fit"):
        pack_count(sizes[2:], Budgets(nodes=16, edges=8, graphs=8, max_graphs=7))


def test_budgets_come_from_the_statistics_and_fit_the_largest_graph() -> None:
    sizes = np.array([[10, 20, 0]] * 50 + [[30, 80, 0]])
    budgets = budgets_for(sizes, 4, largest=np.array([200, 500, 0]))
    assert budgets.nodes >= 201 and budgets.edges >= 500  # The largest graph fits alone.
    assert budgets.graphs % 8 == 0 and budgets.graphs > budgets.max_graphs == 4
    budgets = budgets_for(sizes, 16, largest=sizes.max(axis=0))
    assert 16 * 10 <= budgets.nodes <= 16 * 30 and budgets.nodes % 8 == 0
    with pytest.raises(UserInputError, match=r"data\.max_nodes=8 is too small"):
        budgets_for(sizes, 4, largest=sizes.max(axis=0), nodes=8)


def test_train_stream_resumes_exactly_and_covers_each_epoch() -> None:
    spec = batching()
    iterator = spec.train_iterator(spec.splits["train"], batch_size=6, seed=3)
    first = [next(iterator) for _ in range(4)]
    state = iterator.get_state()
    rest = [next(iterator) for _ in range(5)]
    # One compiled shape for the whole stream.
    assert {tuple(b["nodes"].shape) for b in first + rest} == {first[0]["nodes"].shape}
    resumed = spec.train_iterator(spec.splits["train"], batch_size=6, seed=3)
    resumed.set_state(state)
    for want in rest:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    # The first epoch's 40 graphs each appear once before any repeats (labels = graph ids).
    seen = np.concatenate([b["label"][b["graph_mask"] > 0] for b in first + rest])
    assert sorted(seen[:40]) == list(range(40))
    other = spec.train_iterator(spec.splits["train"], batch_size=6, seed=4)
    assert not np.array_equal(next(other)["label"], first[0]["label"])


def test_eval_passes_pack_every_graph_once_in_order() -> None:
    spec = batching()
    batches = list(spec.eval_batches(spec.splits["test"], batch_size=4))
    labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(11))
    assert len({b["nodes"].shape for b in batches}) == 1


def test_bad_budget_fields_are_user_errors() -> None:
    with pytest.raises(UserInputError, match=r"data\.max_nodes"):
        batching(max_nodes=-1)
    with pytest.raises(UserInputError, match="too small"):
        batching(max_nodes=4).budgets(2)
