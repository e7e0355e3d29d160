"""Graph datasets as DatasetSpecs whose batches are packs of graphs (graph_pipeline.py).

Offline, from jaxdl's own TFDS builders (graph_builders.py), prepared into data_dir on first use:
- `karate_club`: Zachary's karate club, node classification with one labelled node per club;
- `graph_cycles`, `graph_components`, `graph_motifs`: seeded synthetic graph classification;
  `graph_triangles`: graph regression (`target`, the triangle count; its triangle-free vs
  not `label` is beyond message passing, see graph_builders.py);
- `sbm`: a 10,000-node stochastic block model, node classification at scale;
- `karate_club_links`, `sbm_links`: the same graphs for link prediction, with 5% of the edges
  held out for validation and 10% for test (removed from the graph messages pass over).
For machines with the data: TFDS `ogbg_molpcba` (128 binary labels per molecule, some missing).

Every graph becomes a dict: `nodes` (n, F), `edges` (e, D), `senders`/`receivers` (e,), a zero
`globals` (1,), plus what its task reads (see tasks/graph.py and tasks/link_prediction.py).
"""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from jaxdl.data import graph_builders
from jaxdl.data.graph_pipeline import GraphBatching, GraphRecords
from jaxdl.data.graphs import GraphFeature
from jaxdl.data.spec import SPLIT_NAMES, DatasetSpec
from jaxdl.data.tfds_sources import checked_data_dir, open_prepared, prepare_builder
from jaxdl.errors import UserInputError

OGBG_MOLPCBA = "ogbg_molpcba"
LINK_SUFFIX = "_links"
# Link prediction: the fractions of a graph's undirected edges held out, and the seed that
# picks them (fixed: the split is part of the dataset, not of a run).
LINK_VALIDATION_FRACTION = 0.05
LINK_TEST_FRACTION = 0.10
LINK_SPLIT_SEED = 0

# name -> (builder class, builder config or None)
_BUILT: dict[str, tuple[type, str | None]] = {
    "karate_club": (graph_builders.KarateClub, None),
    "graph_cycles": (graph_builders.SyntheticGraphs, "cycles"),
    "graph_components": (graph_builders.SyntheticGraphs, "components"),
    "graph_triangles": (graph_builders.SyntheticGraphs, "triangles"),
    "graph_motifs": (graph_builders.SyntheticGraphs, "motifs"),
    "sbm": (graph_builders.StochasticBlockModel, None),
}
_LINKED = ("karate_club", "sbm")
GRAPH_DATASET_NAMES: tuple[str, ...] = (
    *_BUILT,
    *(name + LINK_SUFFIX for name in _LINKED),
    OGBG_MOLPCBA,
)


def is_graph_dataset(name: Any) -> bool:
    return name in GRAPH_DATASET_NAMES


def load_graph_dataset(config: ConfigDict) -> DatasetSpec:
    """The graph dataset `config.name`, with packs sized by data.max_nodes / data.max_edges."""
    name = config.name
    data_dir = config.get("data_dir", "")
    if name == OGBG_MOLPCBA:
        checked = checked_data_dir(data_dir, name, creates=False)
        splits = _decode(open_prepared(name, SPLIT_NAMES, checked), _molecule)
        num_classes = 128
    else:
        base = name.removesuffix(LINK_SUFFIX)
        builder, builder_config = _BUILT[base]
        checked = prepare_builder(builder, base, data_dir, config=builder_config)
        tfds_name = builder.name if builder_config is None else f"{builder.name}/{builder_config}"
        splits = _decode(open_prepared(tfds_name, SPLIT_NAMES, checked), _graph)
        num_classes = _num_classes(splits)
        if name.endswith(LINK_SUFFIX):
            splits = link_splits(splits["train"][0])
    features = declared_features(splits["train"][0])
    records = {split: GraphRecords(graphs, features) for split, graphs in splits.items()}
    batching = GraphBatching(
        features,
        records,
        max_nodes=config.get("max_nodes", 0),
        max_edges=config.get("max_edges", 0),
    )
    return DatasetSpec(
        name=name,
        splits=records,
        preprocess=_as_is,
        input_shape=features["nodes"].shape,
        num_classes=num_classes,
        batching=batching,
    )


def declared_features(graph: Mapping[str, np.ndarray]) -> dict[str, GraphFeature]:
    """Each key's level, item shape and dtype, read off one decoded graph."""
    levels = {
        "nodes": "node",
        "node_label": "node",
        "edges": "edge",
        "senders": "edge",
        "receivers": "edge",
        "globals": "graph",
        "label": "graph",
        "target": "graph",
        "link_senders": "link",
        "link_receivers": "link",
    }
    features = {}
    for key, value in graph.items():
        level = levels.get(key)
        if key == "label_mask":  # Per node (semi-supervised) or per graph label (molpcba).
            level = "node" if value.ndim == 1 and len(value) == len(graph["nodes"]) else "graph"
        if level is None:
            raise ValueError(f"graph key {key!r} has no known level")
        shape = value.shape if level == "graph" else value.shape[1:]
        features[key] = GraphFeature(
            level, tuple(shape), value.dtype.name, index=key.endswith(("senders", "receivers"))
        )
    return features


def link_splits(graph: Mapping[str, np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """The graph three times: message edges = the train edges (both directions), and as links
    to score, that split's undirected edges (held out of the messages outside train)."""
    senders, receivers = graph["senders"], graph["receivers"]
    once = senders < receivers
    pairs = np.stack([senders[once], receivers[once]], axis=1)
    order = np.random.default_rng(LINK_SPLIT_SEED).permutation(len(pairs))
    num_test = round(len(pairs) * LINK_TEST_FRACTION)
    num_validation = round(len(pairs) * LINK_VALIDATION_FRACTION)
    held = {
        "test": pairs[order[:num_test]],
        "validation": pairs[order[num_test : num_test + num_validation]],
        "train": pairs[order[num_test + num_validation :]],
    }
    train = held["train"]
    message = {
        "nodes": graph["nodes"],
        "edges": np.ones((2 * len(train), 1), np.float32),
        "senders": np.concatenate([train[:, 0], train[:, 1]]).astype(np.int32),
        "receivers": np.concatenate([train[:, 1], train[:, 0]]).astype(np.int32),
        "globals": graph["globals"],
    }
    return {
        split: [
            {
                **message,
                "link_senders": links[:, 0].astype(np.int32),
                "link_receivers": links[:, 1].astype(np.int32),
            }
        ]
        for split, links in held.items()
    }


def _decode(
    sources: Mapping[str, Any], convert: Callable[[Mapping[str, Any]], dict[str, np.ndarray]]
) -> dict[str, list[dict[str, np.ndarray]]]:
    return {
        split: [convert(record) for record in _read_all(source)]
        for split, source in sources.items()
    }


def _read_all(source: Any) -> list[Any]:
    """Every record of a TFDS data source, in one batched read where it offers one."""
    indices = list(range(len(source)))
    read_many = getattr(source, "__getitems__", None)
    return list(read_many(indices)) if read_many is not None else [source[i] for i in indices]


def _graph(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A record of jaxdl's graph builders, as the pipeline's arrays."""
    graph = {
        "nodes": np.asarray(record["nodes"], np.float32),
        "edges": np.asarray(record["edges"], np.float32),
        "senders": np.asarray(record["senders"], np.int32),
        "receivers": np.asarray(record["receivers"], np.int32),
        "globals": np.zeros(1, np.float32),
    }
    if "label" in record:
        graph["label"] = np.asarray(record["label"], np.int32)
    if "target" in record:
        graph["target"] = np.asarray(record["target"], np.float32).reshape(-1)
    if "node_label" in record:
        graph["node_label"] = np.asarray(record["node_label"], np.int32)
        graph["label_mask"] = np.asarray(record["label_mask"], np.float32)
    return graph


def _molecule(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """An ogbg_molpcba record: OGB stores both directions of every bond; NaN = label missing."""
    nodes = np.asarray(record["node_feat"], np.float32)
    edge_index = np.asarray(record["edge_index"], np.int64).reshape(-1, 2)
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= len(nodes)):
        raise UserInputError(
            f"an {OGBG_MOLPCBA} record has edge endpoints outside its {len(nodes)} nodes; the "
            "prepared data is corrupt: prepare it again."
        )
    labels = np.asarray(record["labels"], np.float32)
    return {
        "nodes": nodes,
        "edges": np.asarray(record["edge_feat"], np.float32).reshape(len(edge_index), -1),
        "senders": edge_index[:, 0].astype(np.int32),
        "receivers": edge_index[:, 1].astype(np.int32),
        "globals": np.zeros(1, np.float32),
        "label": np.nan_to_num(labels, nan=0.0),
        "label_mask": np.isfinite(labels).astype(np.float32),
    }


def _num_classes(splits: Mapping[str, list[dict[str, np.ndarray]]]) -> int:
    graphs = [g for graphs in splits.values() for g in graphs]
    key = "node_label" if "node_label" in graphs[0] else "label"
    if key not in graphs[0]:
        return 0
    return int(max(int(np.max(g[key], initial=0)) for g in graphs)) + 1


def _as_is(graph: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return graph


def check_no_subset(config: ConfigDict) -> None:
    """data.classes and data.train_examples_per_class pick examples; a graph split is graphs."""
    for field in ("classes", "train_examples_per_class", "imbalance_ratio"):
        if config.get(field):
            raise UserInputError(
                f"data.{field} picks examples of image and text datasets; graph dataset "
                f"{config.name!r} does not take it. Remove it."
            )
