"""Masked segment reductions over a packed graph batch: the arithmetic under every GNN layer.

A batch is many graphs concatenated into one padded "pack" of fixed budgets (N nodes, E edges,
G graphs), so that one compiled step serves every batch. The pack is a dict of arrays:

- `nodes` (N, F), `edges` (E, D), `globals` (G, Fg): features (padding rows are zeros).
- `senders`, `receivers` (E,): global node indices; a message flows sender -> receiver.
- `n_node`, `n_edge` (G,): graph g owns a contiguous block of nodes (edges) after those of
  graphs 0..g-1.
- `node_mask`, `edge_mask`, `graph_mask`: 1.0 for real entries, 0.0 for padding. Padding
  edges point from and to a padding node.

Padding edges still land in some segment (the padding node they point to), and a padding node
may share a segment with real ones (a graph's pooling), so every reduction here takes a mask and
drops masked entries itself, rather than trusting the pack's layout to keep them apart.
Empty segments (isolated nodes, padding graphs) reduce to 0, never to -inf or NaN.
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp

Graph = Mapping[str, jax.Array]

# Each reduction is jitted, as jax.numpy's own functions are: inside a model's jit it is simply
# inlined, and called eagerly (tests, debugging) it compiles once per shape instead of once per
# primitive it is made of, which on CPU is most of the time such a call takes.
_jit = functools.partial(jax.jit, static_argnames="num_segments")


def node_graph_ids(graph: Graph) -> jax.Array:
    """The graph index of each node, (N,). Padding nodes belong to the padding graph slot(s)."""
    return _repeat_ids(graph["n_node"], graph["nodes"].shape[0])


def edge_graph_ids(graph: Graph) -> jax.Array:
    """The graph index of each edge, (E,)."""
    return _repeat_ids(graph["n_edge"], graph["senders"].shape[0])


@functools.partial(jax.jit, static_argnums=1)
def _repeat_ids(counts: jax.Array, total: int) -> jax.Array:
    return jnp.repeat(jnp.arange(counts.shape[0]), counts, total_repeat_length=total)


def _expand(mask: jax.Array, data: jax.Array) -> jax.Array:
    """`mask` (K,) shaped to broadcast against `data` (K, ...), e.g. with a trailing heads axis."""
    return mask.reshape(mask.shape + (1,) * (data.ndim - mask.ndim))


def _real(mask: jax.Array | None, data: jax.Array) -> jax.Array:
    """The mask as a boolean broadcastable against `data`; all-true when there is none."""
    if mask is None:
        return jnp.ones((data.shape[0],) + (1,) * (data.ndim - 1), bool)
    return _expand(mask, data) > 0


@_jit
def segment_sum(
    data: jax.Array, segment_ids: jax.Array, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """Sum of each segment's real entries; (num_segments, ...)."""
    # A select, not a multiply: a padding entry holding inf or NaN must still add nothing.
    data = jnp.where(_real(mask, data), data, 0)
    return jax.ops.segment_sum(data, segment_ids, num_segments)


@_jit
def segment_count(
    segment_ids: jax.Array, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """How many real entries each segment has, as floats; (num_segments,)."""
    ones = jnp.ones(segment_ids.shape, jnp.float32)
    return segment_sum(ones, segment_ids, num_segments, mask)


@_jit
def segment_mean(
    data: jax.Array, segment_ids: jax.Array, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """Mean of each segment's real entries, 0 for a segment without any."""
    total = segment_sum(data, segment_ids, num_segments, mask)
    count = segment_count(segment_ids, num_segments, mask)
    return total / _expand(jnp.maximum(count, 1.0), total)


@_jit
def segment_max(
    data: jax.Array, segment_ids: jax.Array, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """Max of each segment's real entries, 0 (not -inf) for a segment without any.

    Masked entries become the dtype's lowest finite value rather than -inf, so no inf enters the
    arithmetic or its gradient. A segment is empty when it has no real entries (not when its max
    is that lowest value), so the count of real entries decides where the 0 goes.
    """
    real = _real(mask, data)
    lowest = jnp.finfo(data.dtype).min
    maxed = jax.ops.segment_max(jnp.where(real, data, lowest), segment_ids, num_segments)
    count = segment_count(segment_ids, num_segments, mask)
    return jnp.where(_expand(count, maxed) > 0, maxed, 0)


@_jit
def segment_softmax(
    logits: jax.Array, segment_ids: jax.Array, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """Softmax of `logits` (K, ...) within each segment, over its real entries only.

    Returns weights shaped like `logits`: those of a segment's real entries sum to 1 (per
    trailing index, e.g. per attention head), padding entries get exactly 0. The segment's max
    is subtracted first so large logits cannot overflow; it carries no gradient, as the softmax
    does not depend on it.
    """
    real = _real(mask, logits)
    top = segment_max(logits, segment_ids, num_segments, mask)
    shifted = logits - jax.lax.stop_gradient(top)[segment_ids]
    # Zeroing a padding entry's exponent before exp (not after) keeps garbage logits from
    # overflowing to inf, which times a zero mask would be NaN.
    unnormalised = jnp.where(real, jnp.exp(jnp.where(real, shifted, 0)), 0)
    total = jax.ops.segment_sum(unnormalised, segment_ids, num_segments)
    # Only empty segments have a zero total, and all their entries are padding (already 0).
    total = jnp.where(total > 0, total, 1)
    return unnormalised / total[segment_ids]


@functools.partial(jax.jit, static_argnames="num_nodes")
def degree(indices: jax.Array, num_nodes: int, edge_mask: jax.Array | None = None) -> jax.Array:
    """Number of real edges at each node, as floats; (num_nodes,).

    Pass `receivers` for in-degrees, `senders` for out-degrees.
    """
    return segment_count(indices, num_nodes, edge_mask)
