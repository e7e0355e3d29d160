"""Graph batches: many graphs packed into one padded graph of fixed size.

A compiled step wants fixed shapes; graphs come with any number of nodes and edges. So a batch
is a *pack*: graphs concatenated into one disjoint graph of exactly `Budgets.nodes` nodes,
`Budgets.edges` edges and `Budgets.graphs` graph slots. Graph g's nodes are the contiguous
block after those of graphs 0..g-1, and its senders and receivers are shifted to match. What the
real graphs leave over belongs to padding graphs at the end: zero features, masks 0, and padding
edges from and to node N-1, always a padding node (a pack keeps at least one). Models reduce
with masked segment sums (jaxdl/models/graph_ops.py), so padding never reaches a real output.

A pack is a plain dict of arrays, so the engine feeds, shards and checkpoints it like any other
batch. Besides the dataset's declared keys it holds:

    n_node, n_edge (G,) int32      nodes and edges per graph slot (padding slots included)
    node_mask (N,), edge_mask (E,), graph_mask (G,), link_mask (L,)   float32, 1 = real
    mask (G,) float32              = graph_mask: the engine's "real example" mask

Each declared key has a level: 'node' (N, ...), 'edge' (E, ...), 'graph' (G, ...) or 'link'
(L, ...: node pairs a link-prediction task scores). Keys marked `index` hold node indices and
are shifted with their graph.

How many graphs fit varies with their sizes; `pack_count` takes graphs from a stream while
they fit, up to `max_graphs` of them (data.batch_size; a slot always stays for padding).
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdl.errors import UserInputError

LEVELS = ("node", "edge", "graph", "link")
Graph = dict[str, np.ndarray]
Batch = dict[str, np.ndarray]
# Budgets are rounded up to this, so that a pack splits evenly over up to 8 devices.
ROUND_TO = 8
# A pack's node and edge budgets cover the mean size of `batch_size` graphs plus this many
# standard deviations of their sum: packs rarely close before `batch_size` graphs.
SPREAD_STDS = 3.0


@dataclasses.dataclass(frozen=True)
class GraphFeature:
    """One key of a dataset's graphs: its level, per-item shape and dtype; `index` keys hold
    node indices (senders, receivers, link endpoints)."""

    level: str
    shape: tuple[int, ...]
    dtype: str
    index: bool = False


@dataclasses.dataclass(frozen=True)
class Budgets:
    """The fixed size of a pack."""

    nodes: int
    edges: int
    graphs: int  # Slots, padding included: more than max_graphs.
    links: int = 0
    max_graphs: int = 0  # Real graphs a pack may hold (data.batch_size).

    def of(self, level: str) -> int:
        return {
            "node": self.nodes,
            "edge": self.edges,
            "graph": self.graphs,
            "link": self.links,
        }[level]


def graph_size(graph: Mapping[str, np.ndarray], features: Mapping[str, GraphFeature]) -> tuple:
    """(nodes, edges, links) of one graph, read from its first key of each level."""
    sizes = {"node": 0, "edge": 0, "link": 0}
    for key, feature in features.items():
        if feature.level in sizes:
            sizes[feature.level] = len(graph[key])
    return sizes["node"], sizes["edge"], sizes["link"]


def budgets_for(
    sizes: np.ndarray,
    batch_size: int,
    *,
    largest: np.ndarray,
    nodes: int = 0,
    edges: int = 0,
) -> Budgets:
    """Budgets for packs of up to `batch_size` graphs with per-graph `sizes` (num, 3).

    Node, edge and link budgets default to the mean of `batch_size` graphs plus SPREAD_STDS
    standard deviations of that sum, and never below what the largest graph (`largest`, over
    every split) needs; `nodes`/`edges` > 0 set them (data.max_nodes, data.max_edges).
    """
    mean = sizes.mean(axis=0) * batch_size
    spread = sizes.std(axis=0) * math.sqrt(batch_size) * SPREAD_STDS
    chosen = [_round_up(math.ceil(m + s)) for m, s in zip(mean, spread, strict=True)]
    needed = (int(largest[0]) + 1, int(largest[1]), int(largest[2]))  # +1: a padding node.
    overrides = (("data.max_nodes", nodes), ("data.max_edges", edges))
    for position, (field, value) in enumerate(overrides):
        if value:
            if value < needed[position]:
                raise UserInputError(
                    f"{field}={value} is too small for the dataset's largest graph, which needs "
                    f"{needed[position]}; raise it, or set 0 to choose it from the data."
                )
            chosen[position] = value
    return Budgets(
        nodes=max(chosen[0], _round_up(needed[0])),
        edges=max(chosen[1], _round_up(needed[1]), ROUND_TO),
        graphs=_round_up(batch_size + 1),
        links=max(chosen[2], _round_up(needed[2])) if largest[2] else 0,
        max_graphs=batch_size,
    )


def pack_count(sizes: np.ndarray, budgets: Budgets) -> int:
    """How many of the graphs with `sizes` (in stream order, (k, 3)) the next pack takes."""
    limit = np.array([budgets.nodes - 1, budgets.edges, budgets.links])
    totals = np.cumsum(sizes[: _max_graphs(budgets)], axis=0)
    fits = np.all(totals <= limit, axis=1)
    count = int(np.argmin(fits)) if not fits.all() else len(fits)
    if count == 0 and len(sizes):
        raise ValueError(f"a graph of size {tuple(sizes[0])} does not fit in {budgets}.")
    return count


def pack(
    graphs: Sequence[Mapping[str, np.ndarray]],
    features: Mapping[str, GraphFeature],
    budgets: Budgets,
) -> Batch:
    """One pack holding `graphs` in order, padded to `budgets`."""
    sizes = np.array([graph_size(g, features) for g in graphs], np.int64).reshape(-1, 3)
    used = sizes.sum(axis=0)
    if len(graphs) > _max_graphs(budgets) or used[0] >= budgets.nodes or used[1] > budgets.edges:
        raise ValueError(f"{len(graphs)} graphs of total size {tuple(used)} exceed {budgets}.")
    if used[2] > budgets.links:
        raise ValueError(f"{used[2]} links exceed the budget of {budgets.links}.")
    offsets = np.cumsum(sizes[:, 0]) - sizes[:, 0]  # Each graph's first node in the pack.
    batch: Batch = {}
    for key, feature in features.items():
        rows = budgets.of(feature.level)
        out = np.zeros((rows, *feature.shape), feature.dtype)
        if feature.level == "graph":
            for slot, graph in enumerate(graphs):
                out[slot] = graph[key]
        else:
            parts = [np.asarray(graph[key]) for graph in graphs]
            if feature.index:
                parts = [part + offset for part, offset in zip(parts, offsets, strict=True)]
                out[:] = budgets.nodes - 1  # Padding edges and links join a padding node.
            if parts:
                values = np.concatenate(parts)
                out[: len(values)] = values
        batch[key] = out
    count = len(graphs)
    n_node = np.zeros(budgets.graphs, np.int32)
    n_edge = np.zeros(budgets.graphs, np.int32)
    n_node[:count], n_edge[:count] = sizes[:, 0], sizes[:, 1]
    # The first padding slot owns every padding node and edge; the others stay empty.
    n_node[count] = budgets.nodes - used[0]
    n_edge[count] = budgets.edges - used[1]
    batch["n_node"], batch["n_edge"] = n_node, n_edge
    for level, real in (("node", used[0]), ("edge", used[1]), ("graph", count), ("link", used[2])):
        if level == "link" and not budgets.links:
            continue
        mask = np.zeros(budgets.of(level), np.float32)
        mask[:real] = 1.0
        batch[f"{level}_mask"] = mask
    batch["mask"] = batch["graph_mask"]
    return batch


def unpack(batch: Mapping[str, np.ndarray], features: Mapping[str, GraphFeature]) -> list[Graph]:
    """The real graphs of a pack, as they were before `pack` (the inverse, for checks and tools)."""
    count = int(np.asarray(batch["graph_mask"]).sum())
    n_node = np.asarray(batch["n_node"])[:count]
    n_edge = np.asarray(batch["n_edge"])[:count]
    links = _links_per_graph(batch, features, n_node, count)
    starts = {
        "node": np.concatenate([[0], np.cumsum(n_node)]),
        "edge": np.concatenate([[0], np.cumsum(n_edge)]),
        "link": np.concatenate([[0], np.cumsum(links)]),
    }
    graphs = []
    for g in range(count):
        graph: Graph = {}
        for key, feature in features.items():
            value = np.asarray(batch[key])
            if feature.level == "graph":
                graph[key] = value[g]
                continue
            start = starts[feature.level]
            part = value[start[g] : start[g + 1]]
            graph[key] = part - starts["node"][g] if feature.index else part
        graphs.append(graph)
    return graphs


def empty_pack(features: Mapping[str, GraphFeature], budgets: Budgets) -> Batch:
    """A pack with no real graph: every process's last eval batches, and the example batch."""
    return pack([], features, budgets)


def _links_per_graph(
    batch: Mapping[str, np.ndarray],
    features: Mapping[str, GraphFeature],
    n_node: np.ndarray,
    count: int,
) -> np.ndarray:
    """Links per real graph: a link belongs to the graph of its first endpoint."""
    index_keys = [k for k, f in features.items() if f.level == "link" and f.index]
    if not index_keys:
        return np.zeros(count, np.int64)
    real = int(np.asarray(batch["link_mask"]).sum())
    endpoints = np.asarray(batch[index_keys[0]])[:real]
    bounds = np.cumsum(n_node)
    return np.bincount(np.searchsorted(bounds, endpoints, side="right"), minlength=count)[:count]


def _max_graphs(budgets: Budgets) -> int:
    return budgets.max_graphs or budgets.graphs - 1


def _round_up(value: int) -> int:
    return max(ROUND_TO, -(-value // ROUND_TO) * ROUND_TO)
