"""Graph neural networks over a packed graph batch (the layout is described in graph_ops.py).

Every message-passing layer is called as `layer(nodes, graph, train=...)`, `nodes` the current
(N, F) node state and `graph` the pack, and returns the new (N, features) node state before
any activation. `MPNNLayer` also updates the edge and global states, read from
`graph["edges"]` and `graph["globals"]`, and returns all three. `GNN` stacks layers of one kind
and ends in a node, edge or graph readout.

Padding never reaches a real output: every neighbourhood and graph reduction is masked
(graph_ops), and `GNN` zeroes the padding rows of every state and of its logits, so the same
graphs packed with larger budgets give the same real outputs.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import graph_ops, layers

Graph = Mapping[str, jax.Array]

LAYERS = ("gcn", "sage", "gat", "gin", "mpnn", "mlp")
POOLINGS = ("sum", "mean", "max", "attention")
AGGREGATORS = ("mean", "max")
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


class GNNConfigError(UserInputError, ValueError):
    """A bad `model.*` value: a UserInputError, so the CLI reports it as bad input (exit 2), and
    a ValueError, for code that builds these modules directly."""


def _check(check: Callable[..., None], *args: Any) -> None:
    """Run one of `layers`' field checks, raising its message as a GNNConfigError."""
    try:
        check(*args)
    except UserInputError as error:
        raise GNNConfigError(str(error)) from None


@jax.jit  # Jitted like graph_ops' reductions: one compile per shape when called eagerly.
def _rows(x: jax.Array, mask: jax.Array) -> jax.Array:
    """`x` with the rows where `mask` is 0 set to 0 (a select, so garbage there cannot leak)."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)) > 0, x, 0)


def _dense(
    features: int, dtype: Any, *, use_bias: bool = True, name: str | None = None
) -> nn.Dense:
    """A dense layer computing in `dtype` with float32 parameters, as the other families do."""
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)


class FeedForward(nn.Module):
    """Dense -> ReLU -> Dense: the MLP inside GIN and the graph-network update functions."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = nn.relu(_dense(self.features, self.dtype)(x))
        return _dense(self.features, self.dtype)(hidden)


@jax.jit
def gcn_propagate(
    h: jax.Array, senders: jax.Array, receivers: jax.Array, edge_mask: jax.Array
) -> jax.Array:
    """D^-1/2 (A + I) D^-1/2 h (Kipf & Welling 2017), with the self loop implicit.

    D counts a node's real incoming edges plus one, and each node adds its own state with
    weight 1/D. Degrees are in-degrees at both ends of an edge: the textbook formula for
    undirected graphs (stored as both directions).
    """
    num_nodes = h.shape[0]
    inv_sqrt = jax.lax.rsqrt(graph_ops.degree(receivers, num_nodes, edge_mask) + 1.0)
    coefficient = (inv_sqrt[senders] * inv_sqrt[receivers])[:, None]
    neighbours = graph_ops.segment_sum(h[senders] * coefficient, receivers, num_nodes, edge_mask)
    return neighbours + h * (inv_sqrt**2)[:, None]


class GCNLayer(nn.Module):
    """A graph convolution: gcn_propagate(X W) + b."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph, train: bool = False) -> jax.Array:
        # Transform first: propagation then runs at the (usually smaller) output width.
        h = _dense(self.features, self.dtype, use_bias=False)(nodes)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return gcn_propagate(h, graph["senders"], graph["receivers"], graph["edge_mask"]) + bias


class SAGELayer(nn.Module):
    """GraphSAGE (Hamilton et al. 2017): W_self h + W_neigh aggregate(neighbours).

    The sum of two transforms is the paper's W [h || aggregate]. "mean" averages the neighbours;
    "max" is the paper's pooling aggregator, an elementwise max over ReLU(W_pool h + b) of each
    neighbour. A node without incoming edges aggregates to 0.
    """

    features: int
    aggregator: str = "mean"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check(layers.check_choice, "aggregator", self.aggregator, AGGREGATORS)
        super().__post_init__()

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph, train: bool = False) -> jax.Array:
        senders, receivers, edge_mask = graph["senders"], graph["receivers"], graph["edge_mask"]
        num_nodes = nodes.shape[0]
        neighbour = _dense(self.features, self.dtype, use_bias=False, name="neighbour")
        if self.aggregator == "max":
            pooled = nn.relu(_dense(self.features, self.dtype, name="pool")(nodes))
            pooled = graph_ops.segment_max(pooled[senders], receivers, num_nodes, edge_mask)
            neighbours = neighbour(pooled)
        else:
            # Mean and a linear map commute, so transform first and gather the narrower state.
            h = neighbour(nodes)
            neighbours = graph_ops.segment_mean(h[senders], receivers, num_nodes, edge_mask)
        return _dense(self.features, self.dtype, name="self")(nodes) + neighbours


@jax.jit
def gat_attention(
    source_scores: jax.Array,
    target_scores: jax.Array,
    senders: jax.Array,
    receivers: jax.Array,
    edge_mask: jax.Array,
    node_mask: jax.Array,
    negative_slope: float = 0.2,
) -> tuple[jax.Array, jax.Array]:
    """GAT's attention weights, (E, heads) per edge and (N, heads) per implicit self loop.

    The score of an edge s -> r is LeakyReLU(a . [W h_s || W h_r]), split as
    `source_scores[s] + target_scores[r]` (each (N, heads): a's halves dotted with W h). Each
    receiver's weights over its real incoming edges and its own self loop sum to 1; padding
    edges and padding nodes' self loops get 0.
    """
    num_nodes, num_edges = source_scores.shape[0], senders.shape[0]
    # Softmax in float32 whatever the compute dtype, as attention elsewhere does.
    source_scores = source_scores.astype(jnp.float32)
    target_scores = target_scores.astype(jnp.float32)
    # The self loops ride along as N extra edges, so one softmax normalises over both.
    logits = jnp.concatenate(
        [source_scores[senders] + target_scores[receivers], source_scores + target_scores]
    )
    ids = jnp.concatenate([receivers, jnp.arange(num_nodes)])
    mask = jnp.concatenate([edge_mask, node_mask])
    weights = graph_ops.segment_softmax(nn.leaky_relu(logits, negative_slope), ids, num_nodes, mask)
    return weights[:num_edges], weights[num_edges:]


class GATLayer(nn.Module):
    """Graph attention (Veličković et al. 2018): `heads` heads, each with an implicit self loop.

    With `concat` the heads' outputs are concatenated, `features // heads` features each, so the
    width stays `features`; without, each head has `features` and they are averaged (the paper's
    final layer). The weights are sown as 'edge_attention' (E, heads) and 'self_attention'
    (N, heads) in 'intermediates' (apply with `mutable=['intermediates']`). `dropout` drops
    attention weights in training, as the paper does.
    """

    features: int
    heads: int = 4
    concat: bool = True
    dropout: float = 0.0
    negative_slope: float = 0.2
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check(layers.check_positive_int, "heads", self.heads)
        if self.concat and self.features % self.heads:
            raise GNNConfigError(
                f"model.hidden={self.features} must be a multiple of model.heads={self.heads}: "
                "GAT concatenates its heads."
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph, train: bool = False) -> jax.Array:
        senders, receivers, edge_mask = graph["senders"], graph["receivers"], graph["edge_mask"]
        num_nodes = nodes.shape[0]
        per_head = self.features // self.heads if self.concat else self.features
        h = _dense(self.heads * per_head, self.dtype, use_bias=False)(nodes)
        h = h.reshape(num_nodes, self.heads, per_head)
        init = nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
        source = (h * self.param("attention_source", init, (self.heads, per_head))).sum(-1)
        target = (h * self.param("attention_target", init, (self.heads, per_head))).sum(-1)
        edge_w, self_w = gat_attention(
            source, target, senders, receivers, edge_mask, graph["node_mask"], self.negative_slope
        )
        self.sow("intermediates", "edge_attention", edge_w)
        self.sow("intermediates", "self_attention", self_w)
        drop = layers.Dropout(self.dropout)
        edge_w = drop(edge_w.astype(h.dtype), deterministic=not train)
        self_w = drop(self_w.astype(h.dtype), deterministic=not train)
        out = graph_ops.segment_sum(edge_w[..., None] * h[senders], receivers, num_nodes, edge_mask)
        out = out + self_w[..., None] * h
        out = out.reshape(num_nodes, -1) if self.concat else out.mean(axis=1)
        return out + self.param("bias", nn.initializers.zeros_init(), (out.shape[-1],))


class GINLayer(nn.Module):
    """Graph isomorphism network (Xu et al. 2019): MLP((1 + eps) h + sum of neighbours).

    `eps` is a learned scalar (initialised to 0) with `learn_eps`, the constant 0 otherwise
    (the paper's GIN-0). The sum, not a mean or max, is what lets GIN count neighbours.
    """

    features: int
    learn_eps: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph, train: bool = False) -> jax.Array:
        senders, receivers, edge_mask = graph["senders"], graph["receivers"], graph["edge_mask"]
        eps = self.param("eps", nn.initializers.zeros_init(), ()) if self.learn_eps else 0.0
        neighbours = graph_ops.segment_sum(nodes[senders], receivers, nodes.shape[0], edge_mask)
        return FeedForward(self.features, self.dtype)((1.0 + eps) * nodes + neighbours)


class MPNNLayer(nn.Module):
    """A graph-network block (Battaglia et al. 2018): edge, then node, then global updates.

    Each edge from [edge, sender, receiver, its graph's global]; each node from [node, sum of
    its updated incoming edges, global]; each graph's global from [global, mean of its updated
    nodes, mean of its updated edges]. Each update is a FeedForward to `features`.
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, nodes: jax.Array, graph: Graph, train: bool = False
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        senders, receivers = graph["senders"], graph["receivers"]
        edge_mask, node_mask = graph["edge_mask"], graph["node_mask"]
        edges, globals_ = graph["edges"], graph["globals"]
        num_nodes, num_graphs = nodes.shape[0], globals_.shape[0]
        node_graph, edge_graph = graph_ops.node_graph_ids(graph), graph_ops.edge_graph_ids(graph)

        def update(name: str, *parts: jax.Array) -> jax.Array:
            return FeedForward(self.features, self.dtype, name=name)(jnp.concatenate(parts, -1))

        edges = update("edge_update", edges, nodes[senders], nodes[receivers], globals_[edge_graph])
        incoming = graph_ops.segment_sum(edges, receivers, num_nodes, edge_mask)
        nodes = update("node_update", nodes, incoming, globals_[node_graph])
        node_mean = graph_ops.segment_mean(nodes, node_graph, num_graphs, node_mask)
        edge_mean = graph_ops.segment_mean(edges, edge_graph, num_graphs, edge_mask)
        globals_ = update("global_update", globals_, node_mean, edge_mean)
        return nodes, edges, globals_


class MLPLayer(nn.Module):
    """A structure-blind baseline: each node transformed alone, edges ignored."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph, train: bool = False) -> jax.Array:
        return _dense(self.features, self.dtype)(nodes)


class GraphPooling(nn.Module):
    """Pools each graph's real node states into one row; (G, F), 0 for a graph without nodes.

    "attention" is gated attention pooling (Li et al. 2016): a softmax over the graph's nodes of
    a learned score per node weights their sum.
    """

    pooling: str = "sum"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check(layers.check_choice, "pooling", self.pooling, POOLINGS)
        super().__post_init__()

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph) -> jax.Array:
        ids, mask = graph_ops.node_graph_ids(graph), graph["node_mask"]
        num_graphs = graph["n_node"].shape[0]
        if self.pooling == "attention":
            gate = _dense(1, self.dtype, name="gate")(nodes)[:, 0].astype(jnp.float32)
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
            _check(layers.check_choice, field, getattr(self, field), choices)
        for field in ("hidden", "num_layers", "heads"):
            _check(layers.check_positive_int, field, getattr(self, field))
        for field in ("dropout", "input_dropout"):
            _check(layers.check_rate, field, getattr(self, field))
        _check(layers.resolve_dtype, self.dtype)
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
            return _rows(new, mask)

        # Masked on the way in too, so even garbage in padding rows stays out of real outputs.
        nodes = _rows(graph["nodes"], node_mask)
        nodes = layers.Dropout(self.input_dropout)(nodes, deterministic=not train)
        edges, globals_ = _rows(graph["edges"], edge_mask), _rows(graph["globals"], graph_mask)
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
        logits = _dense(self.num_classes, self.dtype, name="head")(features)
        return _rows(logits.astype(jnp.float32), mask)
