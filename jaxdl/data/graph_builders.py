"""Offline TFDS builders for graph neural networks: one record is one graph.

Every record holds (N nodes, E directed edges):

  nodes      (N, F) float32   node features
  edges      (E, 1) float32   edge features (ones where the graph has none)
  senders    (E,)   int32     local node indices 0..N-1; an undirected edge is stored in both
  receivers  (E,)   int32     directions, with no self loops and no duplicates

plus, for graph tasks, `label` (ClassLabel) and, where there is a regression quantity,
`target` (1,) float32; for node tasks, `node_label` (N,) int32 and `label_mask` (N,) float32,
1 for the nodes whose labels count in the record's split.

Builders (names prefixed so that none clashes with a TFDS built-in):

  jaxdl_karate_club        Zachary's karate club, node classification (two communities).
  jaxdl_synthetic_graphs   graph classification with constant node features, one config per task:
                           cycles, components, triangles, motifs (see the functions of the same
                           names).
  jaxdl_sbm                a 10,000-node stochastic block model, node classification.

Everything is built from networkx or from fixed numpy seeds, so no build needs the network and
every build gives the same records. Importing this module registers the builders with TFDS.
"""

import heapq
import pathlib
from collections.abc import Callable, Iterator
from math import comb
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

SPLITS = ("train", "validation", "test")
EDGE_FEATURES = 1  # Every builder: edge weight or a constant 1.

KARATE_NAME = "jaxdl_karate_club"
KARATE_NUM_CLASSES = 2
KARATE_NODE_FEATURES = 34  # One-hot node identity, as in Kipf & Welling (2017).
KARATE_LEADERS = (0, 33)  # Mr. Hi and the officer: the one labelled node of each community.

SYNTHETIC_NAME = "jaxdl_synthetic_graphs"
SYNTHETIC_NUM_CLASSES = {"cycles": 2, "components": 4, "triangles": 2, "motifs": 2}
SYNTHETIC_NODE_FEATURES = 1  # Constant ones: only the structure tells the classes apart.
SYNTHETIC_SPLIT_SIZES = {"train": 2000, "validation": 500, "test": 500}
TREE_NODES = (10, 30)  # Inclusive node-count range of the cycles and components graphs.
TRIANGLE_NODES = (10, 20)  # Likewise for triangles.
MOTIF_TREE_NODES = (8, 20)  # Likewise for the tree of motifs, which adds the motif's 5 nodes.
# The two 5-node, 6-edge motifs of motifs, with the same degrees (3, 3, 2, 2, 2): the house
# (square 0-1-2-3 with roof 4 on edge 0-1) and K_{2,3} ({0, 1} against {2, 3, 4}).
HOUSE = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [0, 4], [1, 4]])
K23 = np.array([[0, 2], [0, 3], [0, 4], [1, 2], [1, 3], [1, 4]])
MOTIF_NODES = 5

SBM_NAME = "jaxdl_sbm"
SBM_NUM_CLASSES = 5
SBM_NODE_FEATURES = 32
SBM_NODES = 10_000
SBM_DEGREE = 24.0  # Expected degree.
SBM_RATIO = 8.0  # p_in / p_out: about 2/3 of a node's neighbours share its block.
SBM_NOISE = 3.75  # Feature noise std against class means drawn from N(0, 1) per dimension.
SBM_MASK_FRACTIONS = {"train": 0.1, "validation": 0.1}  # Test: the remaining 80%.
SBM_SEED = 0


def graph_record(
    num_nodes: int,
    edges: np.ndarray,
    nodes: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The shared keys of a record for an undirected graph given as (m, 2) distinct pairs u != v.

    Both directions are stored, sorted by sender then receiver; `nodes` defaults to ones (F=1)
    and `weights` (m,) to ones.
    """
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    weights = np.ones(len(edges), np.float32) if weights is None else np.asarray(weights)
    senders = np.concatenate([edges[:, 0], edges[:, 1]])
    receivers = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.lexsort((receivers, senders))
    if nodes is None:
        nodes = np.ones((num_nodes, 1), np.float32)
    return {
        "nodes": np.asarray(nodes, np.float32),
        "edges": np.concatenate([weights, weights])[order].astype(np.float32)[:, None],
        "senders": senders[order].astype(np.int32),
        "receivers": receivers[order].astype(np.int32),
    }


def _graph_features(node_features: int, **extra: tfds.features.FeatureConnector):
    return tfds.features.FeaturesDict(
        {
            "nodes": tfds.features.Tensor(shape=(None, node_features), dtype=np.float32),
            "edges": tfds.features.Tensor(shape=(None, EDGE_FEATURES), dtype=np.float32),
            "senders": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            "receivers": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            **extra,
        }
    )


def _node_task_features(node_features: int) -> tfds.features.FeaturesDict:
    return _graph_features(
        node_features,
        node_label=tfds.features.Tensor(shape=(None,), dtype=np.int32),
        label_mask=tfds.features.Tensor(shape=(None,), dtype=np.float32),
    )


class KarateClub(tfds.core.GeneratorBasedBuilder):
    """Zachary's karate club (34 members, 78 friendships): which club each member joined.

    Every split is one record of the whole graph; only `label_mask` differs. Train labels the two
    leaders (nodes 0 and 33), one per community, the semi-supervised setting of Kipf & Welling.
    Validation labels the same two nodes: 34 nodes leave no honest held-out validation set, so
    validation only tracks the fit to the training labels. Test is the other 32 nodes.
    Edge features are networkx's weights: how many contexts the two members met in (1..7).
    """

    name = KARATE_NAME
    VERSION = tfds.core.Version("1.0.0")
    # TFDS would derive this from the package via optional importlib_resources; say it.
    code_path = pathlib.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # Tensor features, not Image or Sequence: those need TensorFlow, which is not installed.
        return tfds.core.DatasetInfo(
            builder=self,
            description="Zachary's karate club, node classification (Mr. Hi = 0, Officer = 1).",
            features=_node_task_features(KARATE_NODE_FEATURES),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Ships with networkx.
        import networkx as nx  # Here, not at the top: only preparing the data needs it.

        graph = nx.karate_club_graph()
        num_nodes = graph.number_of_nodes()
        edges = np.array([(u, v) for u, v in graph.edges()])
        weights = np.array([w for _, _, w in graph.edges(data="weight", default=1.0)])
        record = graph_record(num_nodes, edges, np.eye(num_nodes), weights)
        clubs = {"Mr. Hi": 0, "Officer": 1}
        record["node_label"] = np.array(
            [clubs[graph.nodes[v]["club"]] for v in range(num_nodes)], np.int32
        )
        leaders = np.zeros(num_nodes, np.float32)
        leaders[list(KARATE_LEADERS)] = 1.0
        masks = {"train": leaders, "validation": leaders, "test": 1.0 - leaders}
        return {split: self._generate_examples(record, masks[split]) for split in SPLITS}

    def _generate_examples(self, record: dict, mask: np.ndarray) -> Iterator[tuple[int, dict]]:
        yield 0, {**record, "label_mask": mask}


def random_tree(rng: np.random.Generator, num_nodes: int) -> np.ndarray:
    """A uniformly random labelled tree on num_nodes >= 2 nodes, as (n-1, 2) edges.

    Decodes a random Prufer sequence: sequences and labelled trees are in bijection.
    """
    if num_nodes == 2:
        return np.array([[0, 1]])
    sequence = rng.integers(0, num_nodes, num_nodes - 2)
    degree = np.bincount(sequence, minlength=num_nodes) + 1
    leaves = [v for v in range(num_nodes) if degree[v] == 1]
    heapq.heapify(leaves)
    edges = []
    for v in sequence.tolist():
        edges.append((heapq.heappop(leaves), v))
        degree[v] -= 1
        if degree[v] == 1:
            heapq.heappush(leaves, v)
    edges.append((heapq.heappop(leaves), heapq.heappop(leaves)))
    return np.array(edges)


def cycles(rng: np.random.Generator, label: int) -> tuple[int, np.ndarray, dict]:
    """Class 0: a random tree; class 1: a random tree plus one edge, closing one cycle (length
    3..n). Node counts are uniform in TREE_NODES for both, so they say nothing; the edge count
    decides (n - 1 against n), and a sum-pooling GNN reads it from the degrees."""
    num_nodes = int(rng.integers(TREE_NODES[0], TREE_NODES[1] + 1))
    edges = random_tree(rng, num_nodes)
    if label == 1:
        adjacent = set(map(tuple, np.sort(edges, axis=1).tolist()))
        while True:  # A tree on >= 10 nodes is sparse: a non-edge comes within a few draws.
            u, v = sorted(rng.choice(num_nodes, 2, replace=False).tolist())
            if (u, v) not in adjacent:
                edges = np.concatenate([edges, [[u, v]]])
                break
    return num_nodes, edges, {}


def components(rng: np.random.Generator, label: int) -> tuple[int, np.ndarray, dict]:
    """A forest of k = label + 1 random trees with n nodes in all (each tree >= 2 nodes, sizes a
    uniform composition of n), node ids shuffled so that trees are not contiguous. Node counts
    are uniform in TREE_NODES for every k; a forest has n - k edges, so the edge count decides."""
    count = label + 1
    num_nodes = int(rng.integers(TREE_NODES[0], TREE_NODES[1] + 1))
    spare = num_nodes - 2 * count  # Nodes beyond the two each tree needs: stars and bars.
    bars = np.sort(rng.choice(spare + count - 1, count - 1, replace=False))
    spares = np.diff(np.concatenate([[-1], bars, [spare + count - 1]])) - 1
    sizes = spares + 2
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    edges = np.concatenate(
        [random_tree(rng, int(s)) + o for s, o in zip(sizes, offsets, strict=True)]
    )
    return num_nodes, rng.permutation(num_nodes)[edges], {}


def count_triangles(num_nodes: int, edges: np.ndarray) -> int:
    adjacency = np.zeros((num_nodes, num_nodes), np.int64)
    adjacency[edges[:, 0], edges[:, 1]] = adjacency[edges[:, 1], edges[:, 0]] = 1
    return int(np.trace(adjacency @ adjacency @ adjacency)) // 6


def triangles(rng: np.random.Generator, label: int) -> tuple[int, np.ndarray, dict]:
    """Class 0: triangle-free; class 1: at least one triangle; `target` is the triangle count.

    n is uniform in TRIANGLE_NODES and m = round(p * C(n, 2)) with p chosen so that a uniform
    random graph with n nodes and m edges, G(n, m), holds about one triangle on average, so is
    triangle-free about half the time (p 0.08-0.25, mean degree 1.5-2.3). Then G(n, m) is drawn
    until its triangle status matches the class. n and m are drawn the same way whatever the
    class, so node and edge counts carry no information at all: a model that sees only them is
    at chance, 50%. The classes are G(n, m) conditioned on each status, so the degree sequence
    carries a little (triangles like uneven degrees). Triangle existence is beyond 1-WL in
    general (Chen et al., 2020): this is the hard config. In a check, a 4-layer GIN with constant
    features reached about 80% test accuracy (100% on cycles, 98% on components): headroom for
    more expressive models.
    """
    num_nodes = int(rng.integers(TRIANGLE_NODES[0], TRIANGLE_NODES[1] + 1))
    # Expected triangles in G(n, p): C(n, 3) p^3; the factor spreads it over about 0.5..2.
    p = comb(num_nodes, 3) ** (-1 / 3) * rng.uniform(0.8, 1.25)
    num_edges = round(p * comb(num_nodes, 2))
    pairs = np.array(np.triu_indices(num_nodes, 1)).T
    while True:  # About 2.4 draws per graph.
        edges = pairs[rng.choice(len(pairs), num_edges, replace=False)]
        count = count_triangles(num_nodes, edges)
        if (count > 0) == bool(label):
            return num_nodes, edges, {"target": np.array([count], np.float32)}


def motifs(rng: np.random.Generator, label: int) -> tuple[int, np.ndarray, dict]:
    """A uniformly random labelled tree on m nodes (m uniform in MOTIF_TREE_NODES) with one
    5-node motif hung from it by a single edge, between a uniformly random tree node and a
    uniformly random motif node; node ids shuffled. Class 0: the house (a 4-cycle with a
    triangle roof); class 1: K_{2,3}, complete bipartite (no triangle). Both motifs have 5
    nodes, 6 edges and degrees {3, 3, 2, 2, 2}, so every graph has m + 5 nodes and m + 6 edges
    whatever the class, and even its degree histogram is distributed alike in both classes (the
    hanging edge meets a degree-3 motif node with probability 2/5 in each): counts, and one
    round of message passing, are at chance. Two rounds of 1-WL colour refinement tell the
    motifs themselves apart (the house's two degree-3 nodes are adjacent, K_{2,3}'s are not),
    so a GIN can solve the task where counts cannot; in the whole graph the tree around the
    motif can mimic some two-round colours, but the motif's three-round colours almost never
    occur in the other class. In a check, a GIN with sum aggregation and readout, BatchNorm,
    width 64 and Adam 1e-2 (cosine decay, 60 epochs) reached 99.4-100% test accuracy with 3
    layers (3 seeds) and 89% with 2.
    """
    tree_nodes = int(rng.integers(MOTIF_TREE_NODES[0], MOTIF_TREE_NODES[1] + 1))
    num_nodes = tree_nodes + MOTIF_NODES
    motif = (HOUSE if label == 0 else K23) + tree_nodes
    hang = [int(rng.integers(tree_nodes)), tree_nodes + int(rng.integers(MOTIF_NODES))]
    edges = np.concatenate([random_tree(rng, tree_nodes), motif, [hang]])
    return num_nodes, rng.permutation(num_nodes)[edges], {}


TASKS: dict[str, Callable[[np.random.Generator, int], tuple[int, np.ndarray, dict]]] = {
    "cycles": cycles,
    "components": components,
    "triangles": triangles,
    "motifs": motifs,  # Last: a task's seed is its index here, so new tasks go at the end.
}


def synthetic_examples(task: str, split: str) -> Iterator[dict[str, np.ndarray]]:
    """The records of one task and split, in order, from a seed fixed per task and split."""
    seed = (list(TASKS).index(task), SPLITS.index(split))
    rng = np.random.default_rng(seed)
    num_classes = SYNTHETIC_NUM_CLASSES[task]
    # Classes exactly balanced (up to one graph), in random order.
    labels = rng.permutation(np.arange(SYNTHETIC_SPLIT_SIZES[split]) % num_classes)
    for label in labels.tolist():
        num_nodes, edges, extra = TASKS[task](rng, label)
        yield {**graph_record(num_nodes, edges), "label": label, **extra}


class SyntheticGraphs(tfds.core.GeneratorBasedBuilder):
    """Seeded graph classification with constant node features; the config name is the task."""

    name = SYNTHETIC_NAME
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=task, description=TASKS[task].__doc__) for task in TASKS
    ]
    code_path = pathlib.Path(__file__)  # See KarateClub.

    def _info(self) -> tfds.core.DatasetInfo:
        task = self.builder_config.name
        extra = {"label": tfds.features.ClassLabel(num_classes=SYNTHETIC_NUM_CLASSES[task])}
        if task == "triangles":
            extra["target"] = tfds.features.Tensor(shape=(1,), dtype=np.float32)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Synthetic graph classification task {task!r} (see the module).",
            features=_graph_features(SYNTHETIC_NODE_FEATURES, **extra),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Generated.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        yield from enumerate(synthetic_examples(self.builder_config.name, split))


def sbm_graph(seed: int = SBM_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block (n,), undirected edges (m, 2) with u < v, features (n, F)) of the SBM.

    networkx's stochastic_block_model tests every node pair, O(n^2): instead each block pair
    draws its edge count from the binomial over its node pairs, then that many random endpoint
    pairs. Duplicates and self loops are dropped: about 0.3% of the draws.
    """
    rng = np.random.default_rng(seed)
    size = SBM_NODES // SBM_NUM_CLASSES
    blocks = np.repeat(np.arange(SBM_NUM_CLASSES), size)
    # Expected degree (size - 1) p_in + (n - size) p_out = SBM_DEGREE, with p_in = ratio p_out.
    p_out = SBM_DEGREE / ((size - 1) * SBM_RATIO + SBM_NODES - size)
    parts = []
    for a in range(SBM_NUM_CLASSES):
        for b in range(a, SBM_NUM_CLASSES):
            pairs = comb(size, 2) if a == b else size * size
            count = rng.binomial(pairs, p_out * (SBM_RATIO if a == b else 1.0))
            ends = rng.integers(0, size, (count, 2)) + np.array([a, b]) * size
            parts.append(ends)
    edges = np.sort(np.concatenate(parts), axis=1)
    edges = np.unique(edges[edges[:, 0] != edges[:, 1]], axis=0)
    means = rng.normal(size=(SBM_NUM_CLASSES, SBM_NODE_FEATURES))
    noise = rng.normal(scale=SBM_NOISE, size=(SBM_NODES, SBM_NODE_FEATURES))
    return blocks, edges, (means[blocks] + noise).astype(np.float32)


def sbm_masks(seed: int = SBM_SEED) -> dict[str, np.ndarray]:
    """Disjoint float32 node masks per split: 10% train, 10% validation, the rest test."""
    order = np.random.default_rng((seed, 1)).permutation(SBM_NODES)
    bounds = np.cumsum([round(f * SBM_NODES) for f in SBM_MASK_FRACTIONS.values()])
    masks = {}
    for split, chosen in zip(SPLITS, np.split(order, bounds), strict=True):
        masks[split] = np.zeros(SBM_NODES, np.float32)
        masks[split][chosen] = 1.0
    return masks


class StochasticBlockModel(tfds.core.GeneratorBasedBuilder):
    """A stochastic block model: 10,000 nodes in 5 equal blocks, ~120,000 undirected edges.

    About two thirds of a node's ~24 neighbours share its block (p_in / p_out = 8). Node features
    are the block's mean plus noise strong enough that the features alone classify ~64% of nodes
    (nearest class mean), and their average over neighbours ~97%: a GNN must use the graph to do
    well. Every split is one record of the whole graph; `label_mask` picks a random 10% of nodes
    for train, another 10% for validation and the remaining 80% for test.
    """

    name = SBM_NAME
    VERSION = tfds.core.Version("1.0.0")
    code_path = pathlib.Path(__file__)  # See KarateClub.

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Seeded 5-block stochastic block model, node classification.",
            features=_node_task_features(SBM_NODE_FEATURES),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Generated.
        blocks, edges, features = sbm_graph()
        record = graph_record(SBM_NODES, edges, features)
        record["node_label"] = blocks.astype(np.int32)
        return {split: self._generate_examples(record, mask) for split, mask in sbm_masks().items()}

    def _generate_examples(self, record: dict, mask: np.ndarray) -> Iterator[tuple[int, dict]]:
        yield 0, {**record, "label_mask": mask}
