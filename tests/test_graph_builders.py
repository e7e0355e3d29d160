"""Graph TFDS builders: prepared for real into temporary dirs and read back with data_source.

Checks the record format (variable-length Tensor features through array_record without
TensorFlow), that labels mean what they say (recomputed with networkx), that the synthetic
tasks cannot be solved from node counts, and that the SBM's graph carries the signal its
features lack. Preparation times are printed (pytest -s shows them).
"""

import ast
import collections
import functools
import itertools
import pathlib
import time

import networkx as nx
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl.data import graph_builders as gb
from jaxdl.data.tfds_sources import ARRAY_RECORD

NO_GCS = tfds.download.DownloadConfig(try_download_gcs=False)


def prepare(builder_class: type, data_dir: pathlib.Path, config: str | None = None) -> dict:
    """Prepares a builder into data_dir; returns its splits as data sources."""
    tfds.disable_progress_bar()
    start = time.perf_counter()
    builder = builder_class(data_dir=str(data_dir), config=config, file_format=ARRAY_RECORD)
    builder.download_and_prepare(download_config=NO_GCS)
    name = builder_class.name + (f"/{config}" if config else "")
    print(f"\nprepared {name} in {time.perf_counter() - start:.2f} s")
    return {
        split: tfds.data_source(name, split=split, data_dir=str(data_dir), download=False)
        for split in gb.SPLITS
    }


@pytest.fixture(scope="module")
def data_dir(graph_data_dir) -> pathlib.Path:
    return pathlib.Path(graph_data_dir)  # Shared with the graph runs: prepared once.


@pytest.fixture(scope="module")
def karate(data_dir) -> dict:
    return {split: source[0] for split, source in prepare(gb.KarateClub, data_dir).items()}


@pytest.fixture(scope="module")
def synthetic(data_dir) -> dict[str, dict[str, list]]:
    """task -> split -> every record, read once."""
    out = {}
    for task in gb.TASKS:
        sources = prepare(gb.SyntheticGraphs, data_dir, task)
        # __getitems__: one batched read, faster than record by record.
        out[task] = {
            split: source.__getitems__(range(len(source))) for split, source in sources.items()
        }
    return out


@pytest.fixture(scope="module")
def sbm(data_dir) -> dict:
    return {
        split: source[0] for split, source in prepare(gb.StochasticBlockModel, data_dir).items()
    }


def check_graph(record: dict, node_features: int) -> nx.Graph:
    """Asserts the shared record format; returns the undirected graph it stores."""
    nodes, edges = record["nodes"], record["edges"]
    senders, receivers = record["senders"], record["receivers"]
    assert nodes.dtype == np.float32 and nodes.ndim == 2 and nodes.shape[1] == node_features
    assert senders.dtype == receivers.dtype == np.int32 and senders.shape == receivers.shape
    assert edges.dtype == np.float32 and edges.shape == (len(senders), gb.EDGE_FEATURES)
    num_nodes = len(nodes)
    assert senders.min() >= 0 and receivers.min() >= 0
    assert max(senders.max(), receivers.max()) < num_nodes
    assert (senders != receivers).all(), "self loop"
    forward = senders.astype(np.int64) * num_nodes + receivers
    backward = receivers.astype(np.int64) * num_nodes + senders
    assert len(np.unique(forward)) == len(forward), "duplicate edge"
    assert np.array_equal(np.sort(forward), np.sort(backward)), "an edge lacks its reverse"
    # Both directions carry the same features.
    assert np.array_equal(edges[np.argsort(forward)], edges[np.argsort(backward)])
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(zip(senders.tolist(), receivers.tolist(), strict=True))
    return graph


def test_builders_register_under_their_names():
    assert tfds.builder_cls(gb.KARATE_NAME) is gb.KarateClub
    assert tfds.builder_cls(gb.SYNTHETIC_NAME) is gb.SyntheticGraphs
    assert tfds.builder_cls(gb.SBM_NAME) is gb.StochasticBlockModel
    assert [c.name for c in gb.SyntheticGraphs.BUILDER_CONFIGS] == list(gb.SYNTHETIC_NUM_CLASSES)


def test_module_imports_neither_networkx_nor_sklearn_at_top_level():
    tree = ast.parse(pathlib.Path(gb.__file__).read_text())
    names = [
        alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names
    ]
    names += [node.module for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("networkx", "sklearn")]


def test_random_trees_are_uniform_labelled_trees():
    rng = np.random.default_rng(0)
    for num_nodes in range(2, 31):
        edges = gb.random_tree(rng, num_nodes)
        assert nx.is_tree(nx.Graph(edges.tolist())) and len(edges) == num_nodes - 1
    # Cayley: 4^2 = 16 labelled trees on 4 nodes, each as likely.
    seen = collections.Counter(
        tuple(sorted(map(tuple, np.sort(gb.random_tree(rng, 4), axis=1).tolist())))
        for _ in range(8000)
    )
    assert len(seen) == 16 and min(seen.values()) > 400 and max(seen.values()) < 600


def test_karate_club(karate):
    club = nx.karate_club_graph()
    for split, record in karate.items():
        graph = check_graph(record, gb.KARATE_NODE_FEATURES)
        assert graph.number_of_nodes() == 34 and len(record["senders"]) == 156
        assert nx.utils.graphs_equal(graph, nx.Graph(club.edges()))
        assert np.array_equal(record["nodes"], np.eye(34, dtype=np.float32))
        communities = [int(club.nodes[v]["club"] == "Officer") for v in range(34)]
        assert record["node_label"].dtype == np.int32
        assert record["node_label"].tolist() == communities, split
        weights = {(u, v): w for u, v, w in club.edges(data="weight")}
        for s, r, w in zip(
            record["senders"], record["receivers"], record["edges"][:, 0], strict=True
        ):
            assert weights.get((s, r), weights.get((r, s))) == w
    leaders = np.isin(np.arange(34), gb.KARATE_LEADERS).astype(np.float32)
    assert np.array_equal(karate["train"]["label_mask"], leaders)
    assert np.array_equal(karate["validation"]["label_mask"], leaders)
    assert np.array_equal(karate["test"]["label_mask"], 1 - leaders)
    assert karate["train"]["node_label"][list(gb.KARATE_LEADERS)].tolist() == [0, 1]


@functools.cache
def _motif_forms(edges: tuple) -> frozenset:
    nodes = range(gb.MOTIF_NODES)
    return frozenset(
        frozenset(frozenset((order[u], order[v])) for u, v in edges)
        for order in itertools.permutations(nodes)
    )


def motif_forms(edges: np.ndarray) -> frozenset:
    """Every labelling of a motif on nodes 0..4, as a frozenset of edges {u, v}: a graph on
    those nodes is isomorphic to the motif if and only if it is among them."""
    return _motif_forms(tuple(map(tuple, edges.tolist())))


def structural_label(task: str, graph: nx.Graph, record: dict) -> int:
    """The label recomputed from the structure alone."""
    if task == "cycles":  # Connected, with one independent cycle or none.
        assert nx.is_connected(graph)
        cycles = len(nx.cycle_basis(graph))
        assert cycles in (0, 1)
        return cycles
    if task == "components":  # A forest: as many edges as nodes less components.
        sizes = [len(c) for c in nx.connected_components(graph)]
        assert graph.number_of_edges() == graph.number_of_nodes() - len(sizes)
        assert min(sizes) >= 2
        return len(sizes) - 1
    triangles = sum(nx.triangles(graph).values()) // 3
    if task == "motifs":  # A tree, a bridge, and the house (a triangle) or K_{2,3} (none).
        assert nx.is_connected(graph)
        assert graph.number_of_edges() == graph.number_of_nodes() + 1
        # Peeling leaves off strips the tree and the hanging edge: the 2-core is the motif.
        core = nx.k_core(graph, 2)
        ids = {v: i for i, v in enumerate(sorted(core))}
        motif = frozenset(frozenset((ids[u], ids[v])) for u, v in core.edges())
        assert motif in motif_forms(gb.HOUSE if triangles else gb.K23)
        return int(triangles == 0)
    assert record["target"].shape == (1,) and record["target"].dtype == np.float32
    assert record["target"][0] == triangles
    return int(triangles > 0)


@pytest.mark.parametrize("task", list(gb.TASKS))
def test_synthetic_labels_match_structure_and_classes_balance(synthetic, task):
    num_classes = gb.SYNTHETIC_NUM_CLASSES[task]
    low, high = {
        "triangles": gb.TRIANGLE_NODES,
        "motifs": np.add(gb.MOTIF_TREE_NODES, gb.MOTIF_NODES),
    }.get(task, gb.TREE_NODES)
    for split, records in synthetic[task].items():
        assert len(records) == gb.SYNTHETIC_SPLIT_SIZES[split]
        labels = [record["label"] for record in records]
        assert np.bincount(labels).tolist() == [len(records) // num_classes] * num_classes
        for record in records:
            graph = check_graph(record, gb.SYNTHETIC_NODE_FEATURES)
            assert low <= graph.number_of_nodes() <= high
            assert (record["nodes"] == 1).all() and (record["edges"] == 1).all()
            assert structural_label(task, graph, record) == record["label"]


def lookup_accuracy(train: list, test: list, key) -> float:
    """Test accuracy of the majority train label per key(record): a model that sees only that."""
    votes = collections.defaultdict(collections.Counter)
    for record in train:
        votes[key(record)][record["label"]] += 1
    hits = [bool(votes[key(r)]) and votes[key(r)].most_common(1)[0][0] == r["label"] for r in test]
    return float(np.mean(hits))


@pytest.mark.parametrize("task", list(gb.TASKS))
def test_synthetic_tasks_are_not_solved_by_counts(synthetic, task):
    chance = 1 / gb.SYNTHETIC_NUM_CLASSES[task]
    train, test = synthetic[task]["train"], synthetic[task]["test"]
    by_nodes = lookup_accuracy(train, test, lambda r: len(r["nodes"]))
    by_counts = lookup_accuracy(train, test, lambda r: (len(r["nodes"]), len(r["senders"])))
    print(f"\n{task}: node count alone {by_nodes:.3f}, node and edge counts {by_counts:.3f}")
    assert by_nodes < chance + 0.08
    if task in ("triangles", "motifs"):  # The others are decided by the edge count, by design.
        assert by_counts < chance + 0.08
    else:
        assert by_counts > 0.99


def test_motifs_match_in_degrees_and_differ_after_two_rounds_of_refinement():
    house, k23 = nx.Graph(gb.HOUSE.tolist()), nx.Graph(gb.K23.tolist())
    for motif in (house, k23):
        assert motif.number_of_nodes() == gb.MOTIF_NODES and motif.number_of_edges() == 6
        assert sorted(d for _, d in motif.degree()) == [2, 2, 2, 3, 3]
    assert sum(nx.triangles(house).values()) == 3 and sum(nx.triangles(k23).values()) == 0

    def refine(graph: nx.Graph, rounds: int) -> list:
        """The sorted 1-WL colours after `rounds` rounds, from constant colours."""
        colours = dict.fromkeys(graph, ())
        for _ in range(rounds):
            colours = {v: (colours[v], sorted(colours[u] for u in graph[v])) for v in graph}
        return sorted(map(repr, colours.values()))

    assert refine(house, 1) == refine(k23, 1)  # Degrees alone: the same.
    assert refine(house, 2) != refine(k23, 2)


def test_motifs_counts_and_degrees_carry_no_label(synthetic):
    # Every graph has m + 5 nodes and m + 6 edges, so its edge count follows from its node
    # count; the node-count and degree distributions of the classes agree up to sampling noise.
    records = [r for split in synthetic["motifs"].values() for r in split]
    assert all(len(r["senders"]) == 2 * (len(r["nodes"]) + 1) for r in records)
    sizes, degrees = ({0: [], 1: []} for _ in range(2))
    for r in records:
        sizes[r["label"]].append(len(r["nodes"]))
        degrees[r["label"]].append(np.bincount(r["senders"]))
    for name, values, tolerance in (
        ("node count", sizes, 0.2),
        ("degree", {c: np.concatenate(d) for c, d in degrees.items()}, 0.05),
    ):
        first, second = (np.bincount(values[c], minlength=40)[:40] / len(values[c]) for c in (0, 1))
        distance = np.abs(first - second).sum()  # Twice the total variation distance.
        print(f"\nmotifs: {name} distributions of the classes {distance:.3f} apart (L1)")
        assert distance < tolerance


def assert_same_record(got: dict, expected: dict, where: tuple) -> None:
    assert got.keys() == expected.keys(), where
    for key, value in expected.items():
        assert np.array_equal(got[key], value), (*where, key)
        assert np.asarray(got[key]).dtype == np.asarray(value).dtype or key == "label", where


def test_synthetic_records_round_trip_and_prepare_deterministically(synthetic, tmp_path):
    # Stored records equal a fresh generation: exact through array_record, and seeded (the
    # smaller splits only, to keep the test fast; each split has its own seed).
    for task in gb.TASKS:
        for split in ("validation", "test"):
            made = gb.synthetic_examples(task, split)
            for index, (stored, record) in enumerate(
                zip(synthetic[task][split], made, strict=True)
            ):
                assert_same_record(stored, record, (task, split, index))
    # A second build writes the same records (triangles: the config with the most draws).
    again = prepare(gb.SyntheticGraphs, tmp_path, "triangles")
    for split, source in again.items():
        for index, stored in enumerate(synthetic["triangles"][split]):
            assert_same_record(source[index], stored, ("again", split, index))
    first, second = synthetic["triangles"]["train"][0], synthetic["triangles"]["test"][0]
    assert not np.array_equal(first["senders"], second["senders"])  # Splits use other seeds.


def nearest_mean_accuracy(features: np.ndarray, labels: np.ndarray, train, test) -> float:
    means = np.stack([features[train & (labels == c)].mean(0) for c in range(gb.SBM_NUM_CLASSES)])
    distances = ((features[test][:, None] - means[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == labels[test]).mean())


def test_sbm(sbm):
    record = sbm["test"]
    graph_keys = ("nodes", "edges", "senders", "receivers", "node_label")
    for split in ("train", "validation"):  # One graph, three masks.
        assert all(np.array_equal(sbm[split][k], record[k]) for k in graph_keys)
    check_graph(record, gb.SBM_NODE_FEATURES)  # Vectorised checks only: 10k nodes.
    nodes, labels = record["nodes"], record["node_label"]
    senders, receivers = record["senders"], record["receivers"]
    assert len(nodes) >= 10_000 and len(senders) >= 200_000 and (record["edges"] == 1).all()
    assert labels.dtype == np.int32
    assert np.bincount(labels).tolist() == [gb.SBM_NODES // gb.SBM_NUM_CLASSES] * 5
    masks = np.stack([sbm[split]["label_mask"] for split in gb.SPLITS])
    assert masks.dtype == np.float32 and np.isin(masks, (0, 1)).all()
    assert (masks.sum(0) == 1).all() and masks.sum(1).tolist() == [1000, 1000, 8000]
    homophily = float((labels[senders] == labels[receivers]).mean())
    # Mean over neighbours: what one round of message passing sees.
    summed = np.zeros_like(nodes)
    np.add.at(summed, receivers, nodes[senders])
    averaged = summed / np.maximum(np.bincount(receivers, minlength=len(nodes)), 1)[:, None]
    train, test = masks[0] == 1, masks[2] == 1
    raw = nearest_mean_accuracy(nodes, labels, train, test)
    smoothed = nearest_mean_accuracy(averaged, labels, train, test)
    print(
        f"\nsbm: {len(senders) // 2} undirected edges, homophily {homophily:.3f}, "
        f"nearest class mean: raw features {raw:.3f}, neighbour-averaged {smoothed:.3f}"
    )
    assert 0.55 < homophily < 0.8
    assert 0.5 < raw < 0.75 and smoothed > 0.9
