"""The message-passing layers of models/gnn.py, over a packed graph batch (see graph_ops.py).

Every layer is called as `layer(nodes, graph, train=...)`, `nodes` the current (N, F) node
state and `graph` the pack, and returns the new (N, features) node state before any
activation. `MPNNLayer` also updates the edge and global states, read from `graph["edges"]` and
`graph["globals"]`, and returns all three. Every neighbourhood reduction is masked (graph_ops),
so padding edges never reach a real node.
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import graph_ops, layers

Graph = Mapping[str, jax.Array]
AGGREGATORS = ("mean", "max")  # GraphSAGE's neighbourhood aggregators.


class GNNConfigError(UserInputError, ValueError):
    """A bad `model.*` value: a UserInputError, so the CLI reports it as bad input (exit 2), and
    a ValueError, for code that builds these modules directly."""


def check_field(check: Callable[..., None], *args: Any) -> None:
    """Run one of `layers`' field checks, raising its message as a GNNConfigError."""
    try:
        check(*args)
    except UserInputError as error:
        raise GNNConfigError(str(error)) from None


@jax.jit  # Jitted like graph_ops' reductions: one compile per shape when called eagerly.
def mask_rows(x: jax.Array, mask: jax.Array) -> jax.Array:
    """`x` with the rows where `mask` is 0 set to 0 (a select, so garbage there cannot leak)."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)) > 0, x, 0)


def dense(features: int, dtype: Any, *, use_bias: bool = True, name: str | None = None) -> nn.Dense:
    """A dense layer computing in `dtype` with float32 parameters, as the other families do."""
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)


class FeedForward(nn.Module):
    """Dense -> ReLU -> Dense: the MLP inside GIN and the graph-network update functions."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = nn.relu(dense(self.features, self.dtype)(x))
        return dense(self.features, self.dtype)(hidden)


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
        h = dense(self.features, self.dtype, use_bias=False)(nodes)
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
        check_field(layers.check_choice, "aggregator", self.aggregator, AGGREGATORS)
        super().__post_init__()

    @nn.compact
    def __call__(self, nodes: jax.Array, graph: Graph, train: bool = False) -> jax.Array:
        senders, receivers, edge_mask = graph["senders"], graph["receivers"], graph["edge_mask"]
        num_nodes = nodes.shape[0]
        neighbour = dense(self.features, self.dtype, use_bias=False, name="neighbour")
        if self.aggregator == "max":
            pooled = nn.relu(dense(self.features, self.dtype, name="pool")(nodes))
            pooled = graph_ops.segment_max(pooled[senders], receivers, num_nodes, edge_mask)
            neighbours = neighbour(pooled)
        else:
            # Mean and a linear map commute, so transform first and gather the narrower state.
            h = neighbour(nodes)
            neighbours = graph_ops.segment_mean(h[senders], receivers, num_nodes, edge_mask)
        return dense(self.features, self.dtype, name="self")(nodes) + neighbours


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
        check_field(layers.check_positive_int, "heads", self.heads)
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
        h = dense(self.heads * per_head, self.dtype, use_bias=False)(nodes)
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
        return dense(self.features, self.dtype)(nodes)
