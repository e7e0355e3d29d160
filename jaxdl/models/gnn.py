"""Graph neural networks over a packed graph batch (the layout is described in graph_ops.py).

`GNN` stacks message-passing layers of one kind (graph_layers.py: GCN, GraphSAGE, GAT, GIN, a
graph-network block, or the structure-blind per-node MLP) and ends in a node, edge or graph
readout.

Padding never reaches a real output: every neighbourhood and graph reduction is masked
(graph_ops), and `GNN` zeroes the padding rows of every state and of its logits, so the same
graphs packed with larger budgets give the same real outputs.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models import graph_ops, layers
from jaxdl.models.graph_layers import (
    AGGREGATORS,
    GATLayer,
    GCNLayer,
    GINLayer,
    GNNConfigError,
    MLPLayer,
    MPNNLayer,
    SAGELayer,
    check_field,
    dense,
    mask_rows,
)

Graph = Mapping[str, jax.Array]

LAYERS = ("gcn", "sage", "gat", "gin", "mpnn", "mlp")
POOLINGS = ("sum", "mean", "max", "attention")
# The string fields of GNN and their allowed values.
CHOICES = MappingProxyType(
    {
        "layer": LAYERS,
        "readout": ("node", "edge", "graph"),
        "pooling": POOLINGS,
        "aggregator": AGGREGATORS,
        "norm": ("none", "layer", "batch"),
    }
)


class GraphPooling(nn.Module):
    """Pools each graph's real node states into one row; (G, F), 0 for a graph without nodes.

    "attention" is gated attention pooling (Li et al. 2016): a softmax over the graph's nodes of
    a learned score per node weights their sum.
    """

    pooling: str = "sum"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_field(layers.check_choice, "pooling", self.pooling, POOLINGS)
        super().__post_init__()

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph) -> jax.Array:
        ids, mask = graph_ops.node_graph_ids(graph), graph["node_mask"]
        num_graphs = graph["n_node"].shape[0]
        if self.pooling == "attention":
            gate = dense(1, self.dtype, name="gate")(nodes)[:, 0].astype(jnp.float32)
            weights = graph_ops.segment_softmax(gate, ids, num_graphs, mask).astype(nodes.dtype)
            return graph_ops.segment_sum(weights[:, None] * nodes, ids, num_graphs, mask)
        reduce = {"sum": graph_ops.segment_sum, "mean": graph_ops.segment_mean}.get(
            self.pooling, graph_ops.segment_max
        )
        return reduce(nodes, ids, num_graphs, mask)


class GNN(nn.Module):
    """`num_layers` message-passing layers of kind `layer`, then a node, edge or graph readout.

    Each layer is followed by [LayerNorm or BatchNorm over the pack's real rows] -> ReLU ->
    dropout, plus the layer's input when
    `residual` and the widths match. The readout is a Dense to `num_classes` over: each node's
    state ("node"); each edge's state for "mpnn", else [h_sender || h_receiver] ("edge"); each
    graph's pooled node states, and its global state for "mpnn" ("graph").
    `jumping_knowledge` reads out the concatenation of the input's and every layer's states
    instead of the last layer's (Xu et al. 2018), as GIN's graph classification does.
    Returns (N, num_classes), (E, num_classes) or (G, num_classes); padding rows are 0.
    """

    num_classes: int
    layer: str = "gcn"
    hidden: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    heads: int = 4
    aggregator: str = "mean"
    learn_eps: bool = True
    readout: str = "node"
    pooling: str = "sum"
    residual: bool = False
    norm: str = "none"
    input_dropout: float = 0.0
    jumping_knowledge: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        # Every field is checked whatever the layer, so a typo fails even where it is unused.
        for field, choices in CHOICES.items():
            check_field(layers.check_choice, field, getattr(self, field), choices)
        for field in ("hidden", "num_layers", "heads"):
            check_field(layers.check_positive_int, field, getattr(self, field))
        for field in ("dropout", "input_dropout"):
            check_field(layers.check_rate, field, getattr(self, field))
        check_field(layers.resolve_dtype, self.dtype)
        if self.layer == "gat" and self.hidden % self.heads:
            raise GNNConfigError(
                f"model.hidden={self.hidden} must be a multiple of model.heads={self.heads} "
                "for layer 'gat', which concatenates its heads."
            )
        super().__post_init__()

    def _layer(self, index: int) -> nn.Module:
        common = {"features": self.hidden, "dtype": self.dtype, "name": f"{self.layer}_{index}"}
        if self.layer == "sage":
            return SAGELayer(aggregator=self.aggregator, **common)
        if self.layer == "gat":
            return GATLayer(heads=self.heads, dropout=self.dropout, **common)
        if self.layer == "gin":
            return GINLayer(learn_eps=self.learn_eps, **common)
        return {"gcn": GCNLayer, "mpnn": MPNNLayer, "mlp": MLPLayer}[self.layer](**common)

    @nn.compact
    def __call__(self, graph: Graph, train: bool = False) -> jax.Array:
        node_mask, edge_mask = graph["node_mask"], graph["edge_mask"]
        graph_mask = graph["graph_mask"]

        def after(new: jax.Array, old: jax.Array, mask: jax.Array, name: str) -> jax.Array:
            if self.norm == "layer":
                new = nn.LayerNorm(dtype=self.dtype, name=f"{name}_norm")(new)
            elif self.norm == "batch":  # Statistics over the real rows of the pack only.
                # A large epsilon: where a state is the same on every node (constant input
                # features through a layer that cannot see the graph), the batch variance is 0
                # and training sees exact zeros; with epsilon 1e-5 the running statistics' last
                # bits of error were then multiplied ~300x per layer at evaluation.
                norm = nn.BatchNorm(
                    momentum=0.9,
                    epsilon=1e-2,
                    use_fast_variance=False,
                    dtype=self.dtype,
                    name=f"{name}_norm",
                )
                new = norm(new, use_running_average=not train, mask=mask[:, None] > 0)
            new = layers.Dropout(self.dropout)(nn.relu(new), deterministic=not train)
            if self.residual and new.shape == old.shape:
                new = new + old
            return mask_rows(new, mask)

        # Masked on the way in too, so even garbage in padding rows stays out of real outputs.
        nodes = mask_rows(graph["nodes"], node_mask)
        nodes = layers.Dropout(self.input_dropout)(nodes, deterministic=not train)
        edges, globals_ = (
            mask_rows(graph["edges"], edge_mask),
            mask_rows(graph["globals"], graph_mask),
        )
        node_states, edge_states, global_states = [nodes], [edges], [globals_]
        for index in range(self.num_layers):
            layer = self._layer(index)
            if self.layer == "mpnn":
                state = {**graph, "edges": edges, "globals": globals_}
                new_nodes, new_edges, new_globals = layer(nodes, state, train=train)
                edges = after(new_edges, edges, edge_mask, f"edges_{index}")
                globals_ = after(new_globals, globals_, graph_mask, f"globals_{index}")
            else:
                new_nodes = layer(nodes, graph, train=train)
            nodes = after(new_nodes, nodes, node_mask, f"nodes_{index}")
            node_states.append(nodes)
            edge_states.append(edges)
            global_states.append(globals_)

        def readout(states: list[jax.Array]) -> jax.Array:
            return jnp.concatenate(states, -1) if self.jumping_knowledge else states[-1]

        if self.readout == "node":
            features, mask = readout(node_states), node_mask
        elif self.readout == "edge" and self.layer == "mpnn":
            features, mask = readout(edge_states), edge_mask
        elif self.readout == "edge":
            h = readout(node_states)
            features = jnp.concatenate([h[graph["senders"]], h[graph["receivers"]]], -1)
            mask = edge_mask
        else:
            pool = GraphPooling(self.pooling, self.dtype, name="pooling")
            features, mask = pool(readout(node_states), graph), graph_mask
            if self.layer == "mpnn":
                features = jnp.concatenate([features, readout(global_states)], -1)
        logits = dense(self.num_classes, self.dtype, name="head")(features)
        return mask_rows(logits.astype(jnp.float32), mask)
