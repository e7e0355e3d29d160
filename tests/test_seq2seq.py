"""Encoder-decoder model, greedy and beam-search decoding, and the seq2seq task."""

import functools
import importlib.util
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from jaxdl.data.spec import Feature
from jaxdl.errors import UserInputError
from jaxdl.models.seq2seq import Seq2SeqTransformer
from jaxdl.tasks.seq2seq import BOS_ID, EOS_ID, PAD_ID, Seq2SeqTask
from jaxdl.text.decoding import beam_search, greedy_decode, length_normaliser

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROWS = 64  # The quick variant's batch size: every compiled function below takes this many rows.
WIDTH = 12  # Source and target rows of the synthetic batches.
# These programs run a few times each: XLA's optimisations would cost more compile time than
# they save (as for the engine's init, engine/setup.py).
UNOPTIMISED = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=UNOPTIMISED)


def _rows(x) -> np.ndarray:
    """`x`'s rows repeated cyclically to ROWS rows."""
    x = np.asarray(x)
    return np.resize(x, (ROWS, *x.shape[1:]))


def _tokens(seed: int, shape: tuple[int, ...], low: int = 3, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.int32)


def _spec(width: int = WIDTH) -> types.SimpleNamespace:
    sequence, scalar = Feature((width,), "int32"), Feature((), "int32")
    features = {
        "source": sequence,
        "source_length": scalar,
        "target": sequence,
        "target_length": scalar,
    }
    return types.SimpleNamespace(
        name="synthetic", features=features, num_classes=256, vocab_size=256
    )


def _reverse_batch(rng: np.random.Generator, rows: int = ROWS, width: int = WIDTH) -> dict:
    """Reversal of 4 to width - 1 lowercase letters, as the algorithmic dataset pads them."""
    source, target = np.zeros((rows, width), np.int32), np.zeros((rows, width), np.int32)
    lengths = rng.integers(4, width, rows).astype(np.int32)
    for row, length in enumerate(lengths):
        text = rng.integers(ord("a"), ord("z") + 1, length)
        source[row, :length], target[row, :length] = text, text[::-1]
    return {"source": source, "source_length": lengths, "target": target, "target_length": lengths}


def _experiment(name: str, variant: str = "quick"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def _quick_task(**task_fields) -> tuple[Seq2SeqTask, dict]:
    """The task of `reverse_t5.py:quick`, over the synthetic batches' full width."""
    config = _experiment("reverse_t5")
    config.task.update({"max_source_length": 0, "max_target_length": 0, **task_fields})
    return Seq2SeqTask.from_config(config, _spec()), config


@functools.cache
def _quick():
    """The quick task, its fresh state and its compiled train step, shared by the tests."""
    task, config = _quick_task()
    assert config.data.batch_size == ROWS
    batch = _reverse_batch(np.random.default_rng(0))
    state = _compile(lambda b: meta.unbox(task.init_state(jax.random.PRNGKey(0), b)), batch)(batch)
    return task, config, state, _compile(task.train_step, state, batch)


@functools.cache
def _forward(positions: str = "learned"):
    """The quick model with these positions, its parameters, and its teacher-forced forward
    pass compiled for (ROWS, WIDTH) sources and (ROWS, WIDTH + 1) decoder inputs."""
    task, _, state, _ = _quick()
    model = task.model.clone(positions=positions)
    params = dict(state.params)
    if positions != "learned":  # Sinusoidal and rotary positions have no table.
        del params["source_positions"], params["target_positions"]

    def forward(params, source, decoder_input, lengths):
        return model.apply(
            {"params": params}, source, decoder_input, source_lengths=lengths, train=False
        )

    shapes = [(ROWS, WIDTH), (ROWS, WIDTH + 1), (ROWS,)]
    example = [np.zeros(shape, np.int32) for shape in shapes]
    return model, params, functools.partial(_compile(forward, params, *example), params)


# Decoding.


def test_beam_of_width_one_is_greedy():
    model, params, _ = _forward()
    ids = {"bos_id": BOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID}
    source = _tokens(1, (4, WIDTH))
    lengths = np.array([WIDTH, 7, 3, 10])

    def decode_all(params):
        mask = jnp.arange(WIDTH) < lengths[:, None]
        encoded = model.apply({"params": params}, source, mask, method="encode")

        def logits_fn(tokens, t):
            logits = model.apply({"params": params}, encoded, mask, tokens, method="decode")
            logits = jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)
            # Even rows end early, odd ones likely run to max_length.
            return logits.at[:, EOS_ID].add(0.5 * t * (jnp.arange(len(logits)) % 2 == 0))

        # A strong length normalisation: still greedy, since all candidates have one length.
        beam, _ = beam_search(logits_fn, 4, 10, beam_size=1, length_penalty=2.0, **ids)
        return greedy_decode(logits_fn, 4, 10, **ids), beam

    greedy, beam = _compile(decode_all, params)(params)
    np.testing.assert_array_equal(beam, greedy)
    greedy = np.asarray(greedy)
    ended = (greedy == EOS_ID).any(axis=1)
    assert ended.any() and (greedy[:, -1] != PAD_ID).any(), greedy  # Some end, some run on.
    for row in greedy[ended]:  # After EOS only padding.
        assert (row[list(row).index(EOS_ID) + 1 :] == PAD_ID).all()


def _crafted_logits_fn(tokens, t):
    """Greedy takes 3 (p 0.5), which then ends with p 0.3; 4 (p 0.4) then ends with p 0.9."""
    first = jnp.array([1e-4, 1e-4, 0.05, 0.5, 0.4, 0.05])
    after_3 = jnp.array([1e-4, 1e-4, 0.3, 0.3, 0.2, 0.2])
    after_4 = jnp.array([1e-4, 1e-4, 0.9, 0.05, 0.03, 0.02])
    previous = jax.lax.dynamic_index_in_dim(tokens, t, axis=1, keepdims=False)
    later = jnp.where((previous == 3)[:, None], after_3, after_4)
    probabilities = jnp.where(t == 0, first, later)
    return jnp.log(probabilities / probabilities.sum(-1, keepdims=True))


def _sequence_logp(ids: np.ndarray) -> float:
    tokens = np.zeros((1, ids.size), np.int32)
    tokens[0, 0] = BOS_ID
    total = 0.0
    for t, token in enumerate(ids):
        total += float(jax.nn.log_softmax(_crafted_logits_fn(tokens, t))[0, token])
        if token == EOS_ID:
            return total
        tokens[0, t + 1] = token
    return total


def test_beam_search_finds_a_more_likely_sequence_than_greedy():
    ids = {"bos_id": BOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID}

    @jax.jit
    def decode_all():
        beams = [
            beam_search(_crafted_logits_fn, 1, 5, beam_size=3, length_penalty=alpha, **ids)
            for alpha in (0.0, 0.6)
        ]
        return greedy_decode(_crafted_logits_fn, 1, 5, **ids), beams

    greedy, beams = decode_all()
    greedy = np.asarray(greedy)[0]
    np.testing.assert_array_equal(greedy, [3, 2, 0, 0, 0])
    for alpha, (decoded, score) in zip((0.0, 0.6), beams, strict=True):
        decoded = np.asarray(decoded)[0]
        np.testing.assert_array_equal(decoded, [4, 2, 0, 0, 0])
        beam_logp = _sequence_logp(decoded)
        assert beam_logp == pytest.approx(np.log(0.4 * 0.9), abs=1e-3)
        normaliser = ((5 + 2) / 6) ** alpha
        assert float(score[0]) == pytest.approx(beam_logp / normaliser, abs=1e-5)
        assert beam_logp > _sequence_logp(greedy)


def test_beam_search_returns_an_unfinished_hypothesis_when_none_ends():
    def never_ends(tokens, t):
        return jnp.zeros((tokens.shape[0], 8)).at[:, 5].set(3.0).at[:, EOS_ID].set(-1e4)

    search = functools.partial(beam_search, beam_size=3, bos_id=BOS_ID, eos_id=EOS_ID)
    decoded, score = jax.jit(lambda: search(never_ends, 2, 4))()
    np.testing.assert_array_equal(decoded, np.full((2, 4), 5))
    assert np.isfinite(np.asarray(score)).all()
    assert float(length_normaliser(jnp.int32(1), 0.6)) == pytest.approx(1.0)


# The model.


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_decoder_output_at_t_ignores_later_decoder_inputs(positions):
    _, _, forward = _forward(positions)
    source = _rows(_tokens(2, (1, WIDTH)))
    lengths = _rows([5])  # Padding after 5 source tokens.
    target = _tokens(3, (1, WIDTH + 1))
    cuts = (0, 4, WIDTH - 1)
    # Row 0: the target; row 1 + i: the same up to position cuts[i], other tokens after it.
    rows = [target[0]]
    for t in cuts:
        rows.append(np.concatenate([target[0, : t + 1], _tokens(4 + t, (WIDTH - t,))]))
        assert not np.array_equal(rows[-1], target[0])
    logits = np.asarray(forward(source, _rows(rows), lengths))
    for row, t in enumerate(cuts, start=1):
        np.testing.assert_allclose(logits[row, : t + 1], logits[0, : t + 1], atol=1e-5)
        assert not np.allclose(logits[row, t + 1 :], logits[0, t + 1 :], atol=1e-3)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_padded_source_positions_change_nothing(positions):
    _, _, forward = _forward(positions)
    lengths = _rows([7, 3, 7, 3])
    real = _rows(_tokens(5, (2, WIDTH)))
    padding = np.arange(WIDTH) >= lengths[:, None]
    # Rows 0, 1 (mod 4): zero padding; rows 2, 3: the same real tokens, other ids after them.
    source = np.where(padding, np.where(np.arange(ROWS)[:, None] % 4 < 2, PAD_ID, 9), real)
    target = _rows(_tokens(6, (2, WIDTH + 1)))
    logits = np.asarray(forward(source, target, lengths))
    np.testing.assert_allclose(logits[2::4], logits[0::4], atol=1e-5)
    np.testing.assert_allclose(logits[3::4], logits[1::4], atol=1e-5)
    # A real token does change the output.
    changed = source.copy()
    changed[0, 0] = 3 if source[0, 0] != 3 else 4
    other = np.asarray(forward(changed, target, lengths))
    assert not np.allclose(other[0], logits[0], atol=1e-4)
    np.testing.assert_allclose(other[1:], logits[1:], atol=1e-5)


def test_tied_embeddings_need_one_vocabulary_and_share_the_table():
    model = Seq2SeqTransformer(num_classes=16, hidden_size=32, tie_embeddings=True)
    tokens = jnp.ones((1, 4), jnp.int32)
    init = functools.partial(model.init, source_lengths=jnp.ones(1, jnp.int32), train=False)
    params = jax.eval_shape(init, jax.random.PRNGKey(0), tokens, tokens)["params"]
    assert "target_embedding" not in params and "head" not in params
    with pytest.raises(UserInputError, match="tie_embeddings"):
        Seq2SeqTransformer(num_classes=16, vocab_size=20, tie_embeddings=True)
    with pytest.raises(UserInputError, match="num_heads"):
        Seq2SeqTransformer(num_classes=16, hidden_size=32, num_heads=5)


# The task.


def test_loss_ignores_padded_target_positions():
    task, _, state, train_step = _quick()
    batch = _reverse_batch(np.random.default_rng(1))
    new_state, metrics = train_step(state, batch)
    # Other values after each target's end change neither the loss nor the update.
    noisy = dict(batch)
    position = np.arange(WIDTH)
    noisy["target"] = np.where(position < batch["target_length"][:, None], batch["target"], 77)
    noisy_state, noisy_metrics = train_step(state, noisy)
    assert float(noisy_metrics["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-6)
    jax.tree.map(np.testing.assert_array_equal, noisy_state.params, new_state.params)
    # The loss is the mean over the target tokens and EOS, nothing else.
    inputs = task._prepare(batch)
    _, _, forward = _forward()
    logits = forward(inputs["source"], inputs["decoder_input"], inputs["source_lengths"])
    logp = np.asarray(jax.nn.log_softmax(logits))
    expected = []
    for row, length in enumerate(batch["target_length"]):
        wanted = [*batch["target"][row, :length], EOS_ID]
        expected += [-logp[row, t, token] for t, token in enumerate(wanted)]
    assert float(metrics["loss"]) == pytest.approx(np.mean(expected), rel=1e-5)


def test_bad_task_fields_are_refused_with_the_field_named():
    for field, value in (("beam_size", 0), ("length_penalty", -1.0), ("max_target_length", -1)):
        with pytest.raises(UserInputError, match=f"task.{field}"):
            _quick_task(**{field: value})


def test_quick_variant_learns_to_reverse_and_evaluates_real_examples_only():
    task, config, state, train_step = _quick()
    rng = np.random.default_rng(2)
    losses = []
    for _ in range(config.train.num_steps):
        state, metrics = train_step(state, _reverse_batch(rng))
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses

    batch = {**_reverse_batch(rng, rows=8), "mask": np.array([1] * 5 + [0] * 3, np.float32)}
    beam_task, _ = _quick_task(beam_size=3)
    for each in (task, beam_task):
        sums = _compile(each.eval_step, state, batch)(state, batch)
        assert float(sums["count"]) == 5
        real = batch["mask"] == 1
        assert float(sums["tokens"]) == float(np.sum(batch["target_length"][real] + 1))
        metrics = each.finalize_eval({k: float(v) for k, v in sums.items()})
        assert set(metrics) == {"loss", "token_accuracy", "exact_match"}
        assert 0.0 <= metrics["exact_match"] <= 1.0
        assert each.summary_fields(metrics) == {"exact_match": metrics["exact_match"]}
        assert metrics["loss"] < losses[0]
