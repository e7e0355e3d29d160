"""Recurrent sequence models: LSTM and GRU layers, stacked, optionally bidirectional.

Inputs are token ids (B, T) with an embedding (`vocab_size` > 0, set from the dataset) or
real-valued signals (B, T) / (B, T, C). `lengths` (B,) gives each sequence's valid prefix;
padding never changes a result:

- a step at t >= length leaves the state as it was, so the forward state at T - 1 is the state
  at each sequence's own last valid step;
- the backward direction reads time reversed, so its padded steps come first and leave the
  zero initial state alone: it starts at each sequence's own last valid step (the valid prefix
  reversed, without gathering anything);
- pooling counts valid steps only.

Speed: the input projection of every step, both directions and all gates is one matrix product
before the scan; the scan itself only does h @ W_hh and the gate arithmetic, both directions
share one scan (one loop iteration per step, not two), and the backward pass forms the
recurrent kernel's gradient after its loop (rnn_cells.py).

Kernels keep gates on their own axis, (in, directions, gates, hidden), so that the 'mlp' (tensor)
split of the hidden units gives every device all gates of its units: the cell update stays
local and only h is gathered for the next step.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers, rnn_cells

CELLS = ("lstm", "gru")
HEADS = ("classify", "per_step")
POOLS = ("last", "mean", "max")
NUM_GATES = {"lstm": 4, "gru": 3}  # lstm: input, forget, cell, output; gru: reset, update, new.


# Random draws are made as 2-D matrices and reshaped: XLA's CPU compiler takes seconds over the
# same draw shaped 4-D, at every run's start.


def _input_kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """LeCun normal with fan-in = shape[0] (the input features), for (in, directions, gates,
    hidden)."""
    matrix = nn.initializers.lecun_normal()(key, (shape[0], math.prod(shape[1:])), dtype)
    return matrix.reshape(shape)


def _orthogonal_per_gate(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """(directions, hidden, gates, hidden) with an orthogonal hidden x hidden matrix per
    direction and gate: orthogonal recurrent weights keep gradients from exploding or dying
    over long sequences (Saxe et al. 2014), and each gate's block needs it on its own."""
    directions, hidden, gates, _ = shape
    blocks = directions * gates
    draws = jax.random.normal(key, (blocks * hidden, hidden), jnp.float32)
    q, r = jnp.linalg.qr(draws.reshape(blocks, hidden, hidden))
    # The signs of R's diagonal make Q uniformly distributed over orthogonal matrices.
    q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    return q.reshape(directions, gates, hidden, hidden).transpose(0, 2, 1, 3).astype(dtype)


def _input_bias_init(cell: str) -> Any:
    """Zeros, except 1.0 on the LSTM forget gate: the cell then remembers by default, which
    helps gradients through long sequences early in training (Jozefowicz et al. 2015)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        del key
        bias = jnp.zeros(shape, dtype)
        return bias.at[:, 1].set(1.0) if cell == "lstm" else bias

    return init


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
        w_x = self.param(
            "input_kernel",
            layers.named(_input_kernel_init, "embed", None, None, "mlp"),
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
        # All steps, directions and gates in one plain 2-D product over time-major rows (time
        # leads for the scan). Written as one einsum to the (T, D, B, G, H) layout instead, its
        # forward took about 3x longer on XLA's CPU backend at the reference LSTM's shape (its
        # gradient about 1.2x); the model's gradient went from about 121 to 108 ms.
        time_major = x.transpose(1, 0, 2).reshape(steps * batch, features).astype(self.dtype)
        gates_x = jnp.matmul(
            time_major,
            w_x.reshape(features, -1).astype(self.dtype),
            preferred_element_type=jnp.float32,
        )
        gates_x = gates_x.reshape(steps, batch, dirs, gates, hidden).transpose(0, 2, 1, 3, 4)
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

        w_hh = w_hh.astype(self.dtype)
        if self.cell == "lstm":
            outputs = rnn_cells.lstm_sequence(gates_x, valid, w_hh, self.unroll)
        else:
            outputs = rnn_cells.gru_sequence(gates_x, valid, w_hh, b_hn, self.unroll)
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
    unroll: int = 1  # Steps per loop iteration (lax.scan unroll); 4 was slower on CPU.
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
