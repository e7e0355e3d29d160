"""The RNN family: LSTM/GRU steps against NumPy, bidirectional layers, masking, causality."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.core import meta

from jaxdl.errors import UserInputError
from jaxdl.models import RNN, build_model, model_fields, rnn_cells
from jaxdl.models.rnn import NUM_GATES, RecurrentLayer


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm(x, w_x, b, w_hh):
    """x (B, T, F); w_x (F, 4, H); b (4, H); w_hh (H, 4, H). Gate order i, f, g, o."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[0]
    h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    outputs = []
    for t in range(steps):
        gate = [x[:, t] @ w_x[:, k] + b[k] + h @ w_hh[:, k] for k in range(4)]
        i, f, g, o = _sigmoid(gate[0]), _sigmoid(gate[1]), np.tanh(gate[2]), _sigmoid(gate[3])
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def _numpy_gru(x, w_x, b, w_hh, b_hn):
    """Gate order r, z, n; the reset gate scales the recurrent product plus its bias."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[0]
    h = np.zeros((batch, hidden))
    outputs = []
    for t in range(steps):
        r = _sigmoid(x[:, t] @ w_x[:, 0] + b[0] + h @ w_hh[:, 0])
        z = _sigmoid(x[:, t] @ w_x[:, 1] + b[1] + h @ w_hh[:, 1])
        n = np.tanh(x[:, t] @ w_x[:, 2] + b[2] + r * (h @ w_hh[:, 2] + b_hn))
        h = (1.0 - z) * n + z * h
        outputs.append(h)
    return np.stack(outputs, axis=1)


def _params(module, *args, seed=0, **kwargs):
    """Parameters of `module` drawn with NumPy (biases too, so that a wrong gate order or bias
    cannot hide). jax.eval_shape gives their shapes without compiling the initialisers, which
    keeps this file fast."""
    init = functools.partial(module.init, **kwargs)
    shapes = meta.unbox(jax.eval_shape(init, jax.random.PRNGKey(0), *args))["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def _apply(module, params, *args, **kwargs):
    """module.apply under jit: one compilation instead of one per operation."""
    return jax.jit(functools.partial(module.apply, **kwargs))({"params": params}, *args)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cells_match_a_numpy_reference(cell):
    x = np.random.default_rng(1).standard_normal((3, 6, 4)).astype(np.float32)
    lengths = np.full((3,), 6)
    layer = RecurrentLayer(cell, hidden_size=5)
    params = _params(layer, x, lengths)
    out = _apply(layer, params, x, lengths)
    chex.assert_shape(out, (3, 6, 1, 5))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    w_x, b, w_hh = p["input_kernel"][:, 0], p["input_bias"][0], p["recurrent_kernel"][0]
    if cell == "lstm":
        expected = _numpy_lstm(x.astype(np.float64), w_x, b, w_hh)
    else:
        expected = _numpy_gru(x.astype(np.float64), w_x, b, w_hh, p["recurrent_bias"][0])
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=1e-4, atol=1e-5)


def _autodiff_sequence(cell, gates_x, valid, w_hh, b_hn=None):
    """The recurrence of rnn_cells as a plain scan, for JAX to differentiate."""

    def step(carry, inputs):
        gx, keep = inputs
        keep = keep[..., None]
        h = carry[0] if cell == "lstm" else carry
        rec = jnp.einsum("dbh,dhgk->dbgk", h, w_hh)
        if cell == "lstm":
            a = gx + rec
            c = jax.nn.sigmoid(a[..., 1, :]) * carry[1] + jax.nn.sigmoid(a[..., 0, :]) * jnp.tanh(
                a[..., 2, :]
            )
            h_new = jax.nn.sigmoid(a[..., 3, :]) * jnp.tanh(c)
            carry = (jnp.where(keep, h_new, h), jnp.where(keep, c, carry[1]))
            return carry, carry[0]
        r = jax.nn.sigmoid(gx[..., 0, :] + rec[..., 0, :])
        z = jax.nn.sigmoid(gx[..., 1, :] + rec[..., 1, :])
        n = jnp.tanh(gx[..., 2, :] + r * (rec[..., 2, :] + b_hn[:, None]))
        h = jnp.where(keep, (1.0 - z) * n + z * h, h)
        return h, h

    zeros = jnp.zeros(gates_x.shape[1:3] + gates_x.shape[-1:])
    return jax.lax.scan(step, (zeros, zeros) if cell == "lstm" else zeros, (gates_x, valid))[1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hand_written_gradients_match_autodiff(cell):
    rng = np.random.default_rng(8)
    steps, dirs, batch, gates, hidden = 7, 2, 3, NUM_GATES[cell], 5
    gates_x = rng.standard_normal((steps, dirs, batch, gates, hidden)).astype(np.float32)
    valid = rng.random((steps, dirs, batch)) < 0.7  # Any pattern, not only prefixes.
    w_hh = (0.5 * rng.standard_normal((dirs, hidden, gates, hidden))).astype(np.float32)
    b_hn = rng.standard_normal((dirs, hidden)).astype(np.float32)
    weights = rng.standard_normal((steps, dirs, batch, hidden)).astype(np.float32)
    if cell == "lstm":
        fast = functools.partial(rnn_cells.lstm_sequence, unroll=1)
        args = (gates_x, w_hh)
    else:
        fast = functools.partial(rnn_cells.gru_sequence, unroll=1)
        args = (gates_x, w_hh, b_hn)

    def loss(sequence, gates_x, w_hh, *b_hn):
        return jnp.sum(sequence(gates_x, valid, w_hh, *b_hn) * weights)

    reference = functools.partial(_autodiff_sequence, cell)
    argnums = tuple(range(len(args)))
    expected = jax.jit(jax.value_and_grad(functools.partial(loss, reference), argnums))(*args)
    got = jax.jit(jax.value_and_grad(functools.partial(loss, fast), argnums))(*args)
    chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-5)


def _reverse_valid_prefix(x, lengths):
    """Each sequence's first `length` steps reversed; the padding stays where it is."""
    t = np.arange(x.shape[1])[None, :]
    index = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return np.take_along_axis(np.asarray(x), index.reshape(*index.shape, *[1] * (x.ndim - 2)), 1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_direction_is_the_forward_one_on_the_reversed_valid_prefix(cell):
    x = np.random.default_rng(2).standard_normal((3, 7, 4)).astype(np.float32)
    lengths = np.array([7, 4, 1])
    both = RecurrentLayer(cell, hidden_size=5, directions=2)
    params = _params(both, x, lengths)
    out = _apply(both, params, x, lengths)
    forward = RecurrentLayer(cell, hidden_size=5, directions=1)
    # The directions axis is the second of the input kernel and the first of the others.
    fwd, bwd = (
        {k: v[:, d : d + 1] if k == "input_kernel" else v[d : d + 1] for k, v in params.items()}
        for d in (0, 1)
    )
    # Both runs of the forward layer in one call: the originals, then the reversed prefixes.
    runs = _apply(
        forward, fwd, np.concatenate([x, _reverse_valid_prefix(x, lengths)]), np.tile(lengths, 2)
    )
    np.testing.assert_allclose(out[:, :, 0], runs[:3, :, 0], atol=1e-6)
    runs = _apply(forward, bwd, _reverse_valid_prefix(x, lengths), lengths)
    expected = _reverse_valid_prefix(runs[:, :, 0], lengths)
    for b, length in enumerate(lengths):
        np.testing.assert_allclose(out[b, :length, 1], expected[b, :length], atol=1e-6)
        np.testing.assert_array_equal(out[b, length:, 1], 0.0)  # Not started yet.


HEADS = [("classify", "last"), ("classify", "mean"), ("classify", "max"), ("per_step", "last")]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_changes_no_output_of_any_head(cell):
    fields = {"vocab_size": 20, "cell": cell, "hidden_size": 8, "embed_dim": 6}
    models = [
        RNN(3, **fields, num_layers=2, bidirectional=True, head=head, pool=pool)
        for head, pool in HEADS
    ]
    rng = np.random.default_rng(3)
    lengths = np.array([9, 5, 1, 0])
    tokens = rng.integers(1, 20, (4, 9))
    valid = np.arange(9)[None, :] < lengths[:, None]
    zero_padded = np.where(valid, tokens, 0)
    junk_padded = np.where(valid, tokens, rng.integers(1, 20, (4, 9)))
    longer = np.pad(zero_padded, ((0, 0), (0, 4)), constant_values=5)  # More, other padding.
    params = _params(models[0], zero_padded, lengths=lengths, train=False)  # Same for all heads.

    @jax.jit
    def every_head(tokens, lengths):
        return [m.apply({"params": params}, tokens, lengths=lengths, train=False) for m in models]

    both = every_head(np.concatenate([zero_padded, junk_padded]), np.tile(lengths, 2))
    extended = every_head(longer, lengths)
    for (head, _), out, out_longer in zip(HEADS, both, extended, strict=True):
        np.testing.assert_array_equal(out[:4], out[4:])
        if head == "per_step":
            chex.assert_shape(out_longer, (4, 13, 3))
            np.testing.assert_allclose(out_longer[:, :9], out[:4], atol=1e-6)
        else:
            chex.assert_shape(out_longer, (4, 3))
            np.testing.assert_allclose(out_longer, out[:4], atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unidirectional_per_step_outputs_depend_on_the_past_only(cell):
    model = RNN(5, cell=cell, hidden_size=8, num_layers=2, head="per_step")
    x = np.random.default_rng(5).standard_normal((1, 6, 2)).astype(np.float32)
    params = _params(model, x, train=False)

    def outputs(x):
        return model.apply({"params": params}, x[None], train=False)[0]

    jacobian = np.asarray(jax.jit(jax.jacrev(outputs))(x[0]))  # (T, classes, T, channels)
    reach = np.abs(jacobian).sum(axis=(1, 3))  # reach[t, s]: does input s move output t?
    np.testing.assert_array_equal(np.triu(reach, k=1), 0.0)  # Nothing from the future ...
    assert (np.diag(reach) > 0).all() and (np.tril(reach) > 0).sum() == 21  # ... all the past.


def test_real_valued_signals_of_one_or_more_channels():
    model = RNN(4, cell="gru", hidden_size=8, bidirectional=True, pool="mean")
    signal = np.random.default_rng(6).standard_normal((3, 10)).astype(np.float32)
    params = _params(model, signal, train=False)
    flat = _apply(model, params, signal, train=False)
    chex.assert_shape(flat, (3, 4))
    np.testing.assert_allclose(flat, _apply(model, params, signal[..., None], train=False))
    channels = RNN(4, hidden_size=8, head="per_step")
    x = np.stack([signal, -signal], axis=-1)
    out = _apply(channels, _params(channels, x, train=False), x, train=False)
    chex.assert_shape(out, (3, 10, 4))
    assert out.dtype == jnp.float32


def test_build_model_passes_the_vocabulary_initialises_and_drops_out_only_in_training():
    assert {"cell", "hidden_size", "num_layers", "bidirectional", "head", "pool"} <= set(
        model_fields("rnn")
    )
    config = ml_collections.ConfigDict(
        {"name": "rnn", "hidden_size": 8, "num_layers": 2, "dropout_rate": 0.5, "dtype": "bfloat16"}
    )
    model = build_model(config, num_classes=2, vocab_size=11)
    assert model.vocab_size == 11 and model.dtype == jnp.bfloat16
    tokens = np.ones((2, 6), np.int32)
    init = jax.jit(functools.partial(model.init, train=False))
    params = meta.unbox(init(jax.random.PRNGKey(0), tokens))["params"]
    assert params["embedding"].shape == (11, model.embed_dim)
    # The initialisers: LSTM forget-gate bias 1, an orthogonal recurrent block per gate.
    layer = params["layer_1"]
    np.testing.assert_array_equal(layer["input_bias"][:, 1], 1.0)
    np.testing.assert_array_equal(layer["input_bias"][:, [0, 2, 3]], 0.0)
    for gate in range(4):
        block = layer["recurrent_kernel"][0, :, gate, :]
        np.testing.assert_allclose(block @ block.T, np.eye(8), atol=1e-5)

    @jax.jit
    def both_modes(params, tokens):
        rngs = {"dropout": jax.random.key(0)}
        train = model.apply({"params": params}, tokens, train=True, rngs=rngs)
        return model.apply({"params": params}, tokens, train=False), train

    eval_out, train_out = both_modes(params, tokens)
    assert eval_out.dtype == jnp.float32
    assert not np.allclose(eval_out, train_out)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cell": "rnn"}, r"model.cell='rnn' is not supported.* lstm, gru"),
        ({"head": "tagging"}, r"model.head='tagging'.*classify, per_step"),
        ({"pool": "first"}, r"model.pool='first'"),
        ({"hidden_size": 0}, r"model.hidden_size=0 must be a positive integer"),
        ({"dropout_rate": 1.0}, r"model.dropout_rate=1.0 must be a number in \[0, 1\)"),
        ({"bidirectional": "yes"}, r"model.bidirectional='yes' must be True or False"),
    ],
)
def test_bad_fields_name_the_field(fields, message):
    with pytest.raises(UserInputError, match=message):
        RNN(2, **fields)


def test_inputs_that_do_not_fit_the_vocabulary_are_refused():
    with pytest.raises(UserInputError, match=r"vocab_size=5 takes integer token ids"):
        _params(RNN(2, vocab_size=5), np.ones((2, 3), np.float32), train=False)
    with pytest.raises(UserInputError, match=r"integer inputs .* model.vocab_size is 0"):
        _params(RNN(2), np.ones((2, 3), np.int32), train=False)
    with pytest.raises(UserInputError, match=r"signals of shape \(batch, length\)"):
        _params(RNN(2), np.ones((2, 3, 4, 5), np.float32), train=False)
