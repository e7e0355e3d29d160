"""The decoder LM: causality, the KV cache, generation by key, and the language-model task."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from jaxdl.errors import UserInputError
from jaxdl.models.attention import attention_choice, heads_first_attention
from jaxdl.models.gpt import DecoderLM
from jaxdl.tasks.language_model import LanguageModelTask
from jaxdl.text.generate import choose_tokens, filter_logits, generate, init_cache

VOCAB = 40


def _model(**fields) -> DecoderLM:
    sizes = dict(hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, max_length=24)
    return DecoderLM(num_classes=VOCAB, vocab_size=VOCAB, **{**sizes, **fields})


def _tokens(seed: int, shape=(2, 16)) -> jax.Array:
    return jax.random.randint(jax.random.PRNGKey(seed), shape, 0, VOCAB)


def _params(model: DecoderLM, tokens: jax.Array):
    return model.init(jax.random.PRNGKey(0), tokens, train=False)["params"]


@pytest.mark.parametrize(
    "positions",
    [
        "rotary",
        pytest.param("learned", marks=pytest.mark.slow),
        pytest.param("sinusoidal", marks=pytest.mark.slow),
    ],
)
def test_output_at_t_ignores_later_inputs(positions):
    model = _model(positions=positions)
    tokens = _tokens(1)
    params = _params(model, tokens)
    changed = tokens.at[:, 9:].set((tokens[:, 9:] + 7) % VOCAB)
    before = model.apply({"params": params}, tokens, train=False)
    after = model.apply({"params": params}, changed, train=False)
    np.testing.assert_array_equal(before[:, :9], after[:, :9])
    assert not np.allclose(before[:, 9:], after[:, 9:])


@pytest.mark.parametrize(
    "fields",
    [
        {"positions": "learned"},
        {"positions": "rotary", "num_kv_heads": 2},  # Grouped-query attention.
        {"positions": "sinusoidal", "norm": "rmsnorm", "mlp": "swiglu", "tie_embeddings": True},
    ],
)
def test_kv_cache_decoding_equals_full_recomputation(fields):
    model = _model(**fields)
    tokens = _tokens(2)
    params = _params(model, tokens)
    full = model.apply({"params": params}, tokens, train=False)
    cache = init_cache(model, params, batch_size=2, length=24)
    pieces = []
    # A 5-token prompt in one call, then one token per call.
    for start, stop in [(0, 5), *((t, t + 1) for t in range(5, 16))]:
        logits, variables = model.apply(
            {"params": params, "cache": cache},
            tokens[:, start:stop],
            train=False,
            decode=True,
            mutable=["cache"],
        )
        cache = variables["cache"]
        pieces.append(logits)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5)
    # The cache is what carries the prefix: the last token alone predicts something else.
    alone = model.apply({"params": params}, tokens[:, 15:], train=False)
    assert not np.allclose(alone[:, 0], full[:, 15], atol=1e-3)


@pytest.mark.slow  # 15 s; the KV cache test covers decoding against full recomputation.
def test_greedy_generation_matches_argmax_of_full_recomputation():
    model = _model()
    prompt = _tokens(3, (2, 4))
    params = _params(model, prompt)
    generated = generate(
        model, params, prompt, jax.random.PRNGKey(0), max_new_tokens=4, temperature=0.0
    )
    sequence = prompt
    for _ in range(4):
        logits = model.apply({"params": params}, sequence, train=False)
        sequence = jnp.concatenate([sequence, jnp.argmax(logits[:, -1:], -1)], axis=1)
    np.testing.assert_array_equal(generated, sequence[:, 4:])


def test_sampling_is_fixed_by_the_key():
    model = _model()
    prompt = _tokens(4, (3, 2))
    params = _params(model, prompt)
    options = dict(max_new_tokens=12, temperature=1.0, top_k=10, top_p=0.9)
    first = generate(model, params, prompt, jax.random.PRNGKey(5), **options)
    again = generate(model, params, prompt, jax.random.PRNGKey(5), **options)
    other = generate(model, params, prompt, jax.random.PRNGKey(6), **options)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    chex.assert_shape(first, (3, 12))


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = jnp.log(jnp.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda filtered: np.isfinite(np.asarray(filtered[0])).tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False, False]
    # 0.5 + 0.2 = 0.7 < 0.8, so the third token is still needed to reach 0.8.
    assert kept(filter_logits(logits, top_p=0.8)) == [True, True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False, False]
    assert kept(filter_logits(logits)) == [True] * 5
    draws = jax.vmap(lambda key: choose_tokens(key, logits, 1.0, 2, 1.0))(
        jax.random.split(jax.random.PRNGKey(0), 200)
    )
    assert set(np.asarray(draws).ravel().tolist()) == {0, 1}


def test_bad_fields_name_the_field():
    with pytest.raises(UserInputError, match=r"model\.num_kv_heads"):
        _model(num_kv_heads=3)
    with pytest.raises(UserInputError, match=r"model\.max_length"):
        model = _model(max_length=8)
        _params(model, _tokens(0))


def test_language_model_eval_counts_tokens_and_reports_bits():
    model = _model()
    task = LanguageModelTask(model, tx=None, learning_rate=None)
    tokens = _tokens(7, (4, 10))
    batch = {"input": tokens[:, :-1], "target": tokens[:, 1:], "mask": jnp.array([1, 1, 1, 0.0])}
    state = _eval_state(model, tokens[:, :-1])
    sums = task.eval_step(state, batch)
    assert float(sums["count"]) == 3 * 9  # Real rows times positions.
    logits = model.apply({"params": state.params}, tokens[:3, :-1], train=False)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:3, 1:, None], -1).sum()
    np.testing.assert_allclose(sums["loss"], nll, rtol=1e-5)
    metrics = task.finalize_eval({key: float(value) for key, value in sums.items()})
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / math.log(2))
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


def _eval_state(model, tokens):
    import optax

    from jaxdl.tasks.state import TrainState

    params = _params(model, tokens)
    tx = optax.sgd(0.1)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        model_state={},
        rng=jax.random.PRNGKey(0),
        apply_fn=model.apply,
        tx=tx,
    )


def test_scanned_layers_compute_what_the_loop_computes():
    looped, scanned = _model(num_layers=3), _model(num_layers=3, scan_layers=True, remat=True)
    tokens = _tokens(8)
    params = meta.unbox(_params(looped, tokens))
    blocks = [params.pop(f"block_{index}") for index in range(3)]
    stacked = {**params, "layers": {"block": jax.tree.map(lambda *x: jnp.stack(x), *blocks)}}
    chex.assert_trees_all_equal_shapes(stacked, meta.unbox(_params(scanned, tokens)))
    np.testing.assert_allclose(
        scanned.apply({"params": stacked}, tokens, train=False),
        looped.apply(
            {"params": {**params, **{f"block_{i}": b for i, b in enumerate(blocks)}}},
            tokens,
            train=False,
        ),
        atol=1e-5,
    )


def test_context_windows_are_separate_sequences():
    model = _model(max_length=8)
    task = LanguageModelTask(model, tx=None, learning_rate=None, context=8)
    tokens = _tokens(9, (2, 17))
    batch = {"input": tokens[:, :-1], "target": tokens[:, 1:], "mask": jnp.array([1.0, 0.0])}
    state = _eval_state(model, tokens[:, :8])
    sums = task.eval_step(state, batch)
    assert float(sums["count"]) == 16  # The first row's two windows of 8; the second is padding.
    windows = {key: batch[key][:1].reshape(2, 8) for key in ("input", "target")}
    direct = LanguageModelTask(model, tx=None, learning_rate=None).eval_step(
        state, {**windows, "mask": jnp.ones(2)}
    )
    np.testing.assert_allclose(sums["loss"], direct["loss"], rtol=1e-6)


def test_auto_attention_takes_cudnn_only_where_it_applies():
    # cuDNN's fused kernel: GPU, half precision, head size a multiple of 8 up to 128, no mask.
    assert attention_choice("gpu", jnp.bfloat16, 64, masked=False) == "cudnn"
    assert attention_choice("gpu", jnp.float16, 128, masked=False) == "cudnn"
    for backend, dtype, head_dim, masked in [
        ("tpu", jnp.bfloat16, 64, False),
        ("gpu", jnp.float32, 64, False),
        ("gpu", jnp.bfloat16, 60, False),
        ("gpu", jnp.bfloat16, 256, False),
        ("gpu", jnp.bfloat16, 64, True),
    ]:
        assert attention_choice(backend, dtype, head_dim, masked) == "xla"
    assert attention_choice("cpu", jnp.bfloat16, 64, masked=False) == "heads_first"
    assert attention_choice("cpu", jnp.float32, 60, masked=True) == "heads_first"


@pytest.mark.parametrize(
    "kv_heads, mask_heads, causal",
    [(4, None, True), (2, 1, False), (2, 4, True), (1, None, False)],
)
def test_heads_first_attention_equals_jax_attention(kv_heads, mask_heads, causal):
    # Grouped-query heads, masks per head or shared, causal or not; gradients too.
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    q = jax.random.normal(keys[0], (2, 6, 4, 8))
    k, v = (jax.random.normal(key, (2, 6, kv_heads, 8)) for key in keys[1:3])
    mask = None if mask_heads is None else jax.random.bernoulli(keys[3], 0.7, (2, mask_heads, 6, 6))
    weights = jax.random.normal(keys[4], q.shape)

    def loss(attend):
        return lambda q, k, v: jnp.sum(attend(q, k, v) * weights)

    def reference(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal)

    expected = jax.value_and_grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
    got = jax.value_and_grad(
        loss(lambda q, k, v: heads_first_attention(q, k, v, mask, causal)), argnums=(0, 1, 2)
    )(q, k, v)
    chex.assert_trees_all_close(got, expected, atol=1e-5, rtol=1e-5)
