"""Recurrent sequence models: LSTM and GRU layers, stacked, optionally bidirectional.

Inputs are token ids (B, T) with an embedding (`vocab_size` > 0, set from the dataset) or
real-valued signals (B, T) / (B, T, C). `lengths` (B,) gives each sequence's valid prefix;
padding never changes a result:

- a step at t >= length leaves the state as it was, so the forward state at T - 1 is the state
  at each sequence's own last valid step;
- the backward direction runs a reversed scan from t = T - 1 in which the padded steps come
  first and leave the zero initial state alone, so it starts at each sequence's own last valid
  step (the valid prefix reversed, without gathering anything);
- pooling counts valid steps only.

Speed: the input projection of every step, both directions and all gates is one matrix product
before the scan; the scan itself only does h @ W_hh and the gate arithmetic, and both directions
share one scan (one loop iteration per step, not two).

Kernels keep gates on their own axis, (in, directions, gates, hidden), so that the 'mlp' (tensor)
split of the hidden units gives every device all gates of its units: the cell update stays
local and only h is gathered for the next step.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers

CELLS = ("lstm", "gru")
HEADS = ("classify", "per_step")
POOLS = ("last", "mean", "max")
NUM_GATES = {"lstm": 4, "gru": 3}  # lstm: input, forget, cell, output; gru: reset, update, new.


def _orthogonal_per_gate(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """(directions, hidden, gates, hidden) with an orthogonal hidden x hidden matrix per
    direction and gate: orthogonal recurrent weights keep gradients from exploding or dying
    over long sequences (Saxe et al. 2014), and each gate's block needs it on its own."""
    directions, hidden, gates, _ = shape
    keys = jax.random.split(key, directions * gates)
    blocks = jax.vmap(lambda k: nn.initializers.orthogonal()(k, (hidden, hidden), dtype))(keys)
    return blocks.reshape(directions, gates, hidden, hidden).transpose(0, 2, 1, 3)


def _input_bias_init(cell: str) -> Any:
    """Zeros, except 1.0 on the LSTM forget gate: the cell then remembers by default, which
    helps gradients through long sequences early in training (Jozefowicz et al. 2015)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        del key
        bias = jnp.zeros(shape, dtype)
        return bias.at[:, 1].set(1.0) if cell == "lstm" else bias

    return init


def lstm_step(
    carry: tuple[jax.Array, jax.Array], gates_x: jax.Array, w_hh: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One LSTM step. carry (h, c) (..., H); gates_x (..., 4, H) = x @ W_x + b, hoisted out of
    the scan; w_hh (H, 4, H) or batched over a leading directions axis matching carry's."""
    h, c = carry
    gates = gates_x + _recurrent(h, w_hh)
    i, f, g, o = (gates[..., k, :] for k in range(4))
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


def gru_step(h: jax.Array, gates_x: jax.Array, w_hh: jax.Array, b_hn: jax.Array) -> jax.Array:
    """One GRU step (Cho et al. 2014, the reset gate applied after the recurrent product as in
    cuDNN and Flax). gates_x (..., 3, H) = x @ W_x + b; b_hn (H,) is the recurrent bias of the
    new-state gate, which the reset gate scales and so cannot be folded into b."""
    recurrent = _recurrent(h, w_hh)
    r = jax.nn.sigmoid(gates_x[..., 0, :] + recurrent[..., 0, :])
    z = jax.nn.sigmoid(gates_x[..., 1, :] + recurrent[..., 1, :])
    n = jnp.tanh(gates_x[..., 2, :] + r * (recurrent[..., 2, :] + b_hn))
    return (1.0 - z) * n + z * h


def _recurrent(h: jax.Array, w_hh: jax.Array) -> jax.Array:
    """h (D, B, H) @ w_hh (D, H, G, H) per direction, or h (B, H) @ w_hh (H, G, H)."""
    w = w_hh.astype(h.dtype)
    if w.ndim == 4:
        return jnp.einsum("dbh,dhgk->dbgk", h, w, preferred_element_type=jnp.float32)
    return jnp.einsum("bh,hgk->bgk", h, w, preferred_element_type=jnp.float32)


class RecurrentLayer(nn.Module):
    """One LSTM or GRU layer over (B, T, F), forward only or both directions.

    Returns (B, T, directions, hidden): the state after each step. At padded steps that is the
    state carried unchanged (forward: the state at the last valid step; backward: zeros, since
    it has not started), so even padded outputs do not depend on what the padding holds.
    """

    cell: str
    hidden_size: int
    directions: int = 1
    dtype: Any = jnp.float32
    unroll: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        batch, steps, features = x.shape
        dirs, gates, hidden = self.directions, NUM_GATES[self.cell], self.hidden_size
        kernel_init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3))
        w_x = self.param(
            "input_kernel",
            layers.named(kernel_init, "embed", None, None, "mlp"),
            (features, dirs, gates, hidden),
            jnp.float32,
        )
        b = self.param(
            "input_bias",
            layers.named(_input_bias_init(self.cell), None, None, "mlp"),
            (dirs, gates, hidden),
            jnp.float32,
        )
        # The recurrent kernel's input axis stays whole: an fsdp split of it would be gathered
        # at every step of the loop.
        w_hh = self.param(
            "recurrent_kernel",
            layers.named(_orthogonal_per_gate, None, None, None, "mlp"),
            (dirs, hidden, gates, hidden),
            jnp.float32,
        )
        b_hn = None
        if self.cell == "gru":
            b_hn = self.param(
                "recurrent_bias",
                layers.named(nn.initializers.zeros_init(), None, "mlp"),
                (dirs, hidden),
                jnp.float32,
            )
        # All steps, directions and gates in one product; time leads for the scan.
        gates_x = jnp.einsum(
            "btf,fdgh->tdbgh",
            x.astype(self.dtype),
            w_x.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )
        gates_x = gates_x + b[:, None]
        time = jnp.arange(steps)
        valid = time[:, None] < lengths[None, :]  # (T, B)
        if dirs == 2:
            # The backward direction reads time reversed; step s of the scan handles forward
            # step s and backward step T - 1 - s together.
            gates_x = jnp.stack([gates_x[:, 0], gates_x[::-1, 1]], axis=1)
            valid = jnp.stack([valid, valid[::-1]], axis=1)  # (T, 2, B)
        else:
            valid = valid[:, None]  # (T, 1, B)

        zeros = jnp.zeros((dirs, batch, hidden), jnp.float32)

        def step(carry: Any, inputs: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            g, keep = inputs
            keep = keep[..., None]
            if self.cell == "lstm":
                h, c = lstm_step(carry, g, w_hh)
                carry = (jnp.where(keep, h, carry[0]), jnp.where(keep, c, carry[1]))
                return carry, carry[0]
            h = gru_step(carry, g, w_hh, b_hn[:, None])
            carry = jnp.where(keep, h, carry)
            return carry, carry

        init = (zeros, zeros) if self.cell == "lstm" else zeros
        _, outputs = jax.lax.scan(step, init, (gates_x, valid), unroll=self.unroll)
        if dirs == 2:
            outputs = jnp.stack([outputs[:, 0], outputs[::-1, 1]], axis=1)
        return outputs.transpose(2, 0, 1, 3)  # (B, T, D, H)


class RNN(nn.Module):
    """Embedding or signal input -> `num_layers` recurrent layers -> a head.

    head='classify' gives (B, num_classes) from the pooled states (pool='last': each direction's
    final state at the sequence's own end; 'mean'/'max' over valid steps); head='per_step' gives
    (B, T, num_classes), for tagging and, unidirectional, next-token language modelling (the
    output at t depends on inputs up to t only). Dropout is applied to each layer's output
    (between layers and before the head), never inside the recurrence.
    """

    num_classes: int
    vocab_size: int = 0  # From the dataset: 0 = real-valued signals, > 0 = token ids.
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    embed_dim: int = 64  # Token embedding width (signals feed the first layer directly).
    dropout_rate: float = 0.0
    head: str = "classify"
    pool: str = "last"
    unroll: int = 1  # Scan steps per loop iteration: more trades compile time for speed.
    dtype: Any = jnp.float32
    batch_axis_name: Any = None  # Set by the task in shard_map mode (layers.Dropout).

    def __post_init__(self) -> None:
        layers.check_choice("cell", self.cell, CELLS)
        layers.check_positive_int("hidden_size", self.hidden_size)
        layers.check_positive_int("num_layers", self.num_layers)
        if not isinstance(self.bidirectional, bool):
            raise UserInputError(
                f"model.bidirectional={self.bidirectional!r} must be True or False."
            )
        layers.check_positive_int("embed_dim", self.embed_dim)
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.check_choice("head", self.head, HEADS)
        layers.check_choice("pool", self.pool, POOLS)
        layers.check_positive_int("unroll", self.unroll)
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int):
            raise UserInputError(f"model.vocab_size={self.vocab_size!r} must be an integer >= 0.")
        if self.vocab_size < 0:
            raise UserInputError(f"model.vocab_size={self.vocab_size!r} must be an integer >= 0.")
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, lengths: jax.Array | None = None, train: bool) -> jax.Array:
        x = self._inputs(x)
        batch, steps = x.shape[:2]
        if lengths is None:
            lengths = jnp.full((batch,), steps, jnp.int32)
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32).reshape(batch), 0, steps)
        directions = 2 if self.bidirectional else 1
        for index in range(self.num_layers):
            layer = RecurrentLayer(
                self.cell,
                self.hidden_size,
                directions,
                self.dtype,
                self.unroll,
                name=f"layer_{index}",
            )
            x = layer(x, lengths).reshape(batch, steps, directions * self.hidden_size)
            dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
            x = dropout(x, deterministic=not train)
        if self.head == "classify":
            x = _pool(x, lengths, self.pool, self.hidden_size)
        head = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=layers.named(nn.initializers.lecun_normal(), "embed", "classes"),
            bias_init=layers.named(nn.initializers.zeros_init(), "classes"),
            name="head",
        )
        logits = head(x)
        return logits.astype(jnp.float32)

    def _inputs(self, x: jax.Array) -> jax.Array:
        """(B, T, F) features from token ids (B, T) or signals (B, T) / (B, T, C)."""
        integer = jnp.issubdtype(x.dtype, jnp.integer)
        if self.vocab_size:
            if not integer or x.ndim != 2:
                raise UserInputError(
                    f"model 'rnn' with vocab_size={self.vocab_size} takes integer token ids of "
                    f"shape (batch, length); got {x.dtype} {x.shape}."
                )
            embedding = self.param(
                "embedding",
                layers.named(nn.initializers.normal(1.0), "vocab", "embed"),
                (self.vocab_size, self.embed_dim),
                jnp.float32,
            )
            return jnp.take(embedding, x, axis=0, mode="clip").astype(self.dtype)
        if integer:
            raise UserInputError(
                f"model 'rnn' got integer inputs {x.shape} but model.vocab_size is 0 (real-valued "
                "signals); token datasets declare their vocabulary, or cast the data to float."
            )
        if x.ndim == 2:
            return x[..., None].astype(self.dtype)
        if x.ndim == 3:
            return x.astype(self.dtype)
        raise UserInputError(
            f"model 'rnn' takes signals of shape (batch, length) or (batch, length, channels); "
            f"got {x.shape}. Set data.input_kind='signal' for 1-D or 2-D examples."
        )


def _pool(x: jax.Array, lengths: jax.Array, kind: str, hidden: int) -> jax.Array:
    """(B, T, directions * hidden) -> (B, directions * hidden) over each sequence's valid steps."""
    steps = x.shape[1]
    if kind == "last":
        # Forward: the state carried to T - 1 is the state at length - 1. Backward (the second
        # half of the features): the state at step 0 has read the whole valid prefix.
        return jnp.concatenate([x[:, steps - 1, :hidden], x[:, 0, hidden:]], axis=-1)
    valid = (jnp.arange(steps)[None, :] < lengths[:, None])[..., None]
    if kind == "mean":
        total = jnp.sum(jnp.where(valid, x, 0.0), axis=1)
        return total / jnp.maximum(lengths, 1)[:, None].astype(x.dtype)
    lowest = jnp.finfo(x.dtype).min
    peak = jnp.max(jnp.where(valid, x, lowest), axis=1)
    return jnp.where(lengths[:, None] > 0, peak, 0.0)
