"""Greedy and beam-search decoding in pure JAX, for any autoregressive model.

Both run a fixed number of steps at most (`max_length`, so they jit) in a `lax.while_loop` that
stops early once every sequence has ended, and ask the model only for `logits_fn(tokens, t)`:
the next-token logits (N, vocab) at position t of the decoder inputs `tokens` (N, max_length),
which hold the start token at position 0, the tokens decoded so far at 1..t and padding after.
A causal decoder never looks past t, so recomputing the whole prefix each step is exact; a model
with a cache may ignore everything but position t.

Outputs are (B, max_length) token ids: the decoded tokens, the end token included, then
`pad_id`. A sequence that never ends is cut at `max_length` tokens.

Beam search keeps the `beam_size` best hypotheses per example, finished or not, ranked by
log-probability divided by the GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016;
alpha = `length_penalty`, 0 ranks by log-probability alone). A finished hypothesis keeps its
slot until better ones push it out (the best one found is remembered), and the search stops
when no open hypothesis can still beat the best finished one. All extensions of one hypothesis have the same length, so a beam of
width 1 is greedy decoding, whatever alpha.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]
# Scores of impossible hypotheses: finite, so that sums and divisions never make NaN.
NEG_INF = -1.0e9


def greedy_decode(
    logits_fn: LogitsFn,
    batch_size: int,
    max_length: int,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
) -> jax.Array:
    """(batch_size, max_length) ids: the most likely token at each step until `eos_id`."""
    tokens = jnp.full((batch_size, max_length + 1), pad_id, jnp.int32).at[:, 0].set(bos_id)
    done = jnp.zeros(batch_size, bool)

    def keep_going(carry):
        t, _, done = carry
        return (t < max_length) & ~jnp.all(done)

    def step(carry):
        t, tokens, done = carry
        logits = logits_fn(tokens[:, :max_length], t)
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        token = jnp.where(done, pad_id, token)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], t + 1, axis=1)
        return t + 1, tokens, done | (token == eos_id)

    _, tokens, _ = jax.lax.while_loop(keep_going, step, (jnp.int32(0), tokens, done))
    return tokens[:, 1:]


def length_normaliser(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT's length penalty ((5 + length) / 6) ** alpha."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def beam_search(
    logits_fn: LogitsFn,
    batch_size: int,
    max_length: int,
    *,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    length_penalty: float = 0.6,
) -> tuple[jax.Array, jax.Array]:
    """(ids (batch_size, max_length), scores (batch_size,)) of each example's best hypothesis.

    `logits_fn` sees batch_size * beam_size rows, example-major (rows b * beam_size ... of
    example b), so a model repeats its per-example inputs (e.g. encoder outputs) with
    `jnp.repeat(x, beam_size, axis=0)`. The score is the normalised log-probability.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    b, k = batch_size, beam_size
    seqs = jnp.full((b, k, max_length + 1), pad_id, jnp.int32).at[:, :, 0].set(bos_id)
    # Only the first beam is open at the start: the others would duplicate it.
    logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1)), (b, 1))
    length = jnp.zeros((b, k), jnp.int32)
    done = jnp.zeros((b, k), bool)
    # The best finished hypothesis ever kept in the beam: open ones may push it out later.
    best, best_score = seqs[:, 0], jnp.full(b, NEG_INF)
    longest = length_normaliser(jnp.int32(max_length), length_penalty)

    def keep_going(carry):
        t, _, logp, _, done, _, best_score = carry
        # Log-probabilities only fall and the normaliser grows with length: an open hypothesis
        # can reach at most its log-probability now over the longest normaliser.
        best_open = jnp.max(jnp.where(done, NEG_INF, logp / longest), -1)
        return (t < max_length) & jnp.any(best_open > best_score)

    def step(carry):
        t, seqs, logp, length, done, best, best_score = carry
        logits = logits_fn(seqs[:, :, :max_length].reshape(b * k, max_length), t)
        token_logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(b, k, -1)
        vocab = token_logp.shape[-1]
        # A finished hypothesis stays as it is (one candidate: padding, at no cost) and competes
        # for its slot with its normalised score, so a beam of width 1 is greedy decoding.
        stay = jnp.full(vocab, NEG_INF).at[pad_id].set(0.0)
        total = logp[:, :, None] + jnp.where(done[:, :, None], stay, token_logp)
        new_length = jnp.where(done, length, t + 1)
        score = total / length_normaliser(new_length, length_penalty)[:, :, None]
        top_score, index = jax.lax.top_k(score.reshape(b, k * vocab), k)
        beam, token = index // vocab, (index % vocab).astype(jnp.int32)
        seqs = jnp.take_along_axis(seqs, beam[:, :, None], axis=1)
        seqs = jax.lax.dynamic_update_slice_in_dim(seqs, token[:, :, None], t + 1, axis=2)
        logp = jnp.take_along_axis(total.reshape(b, k * vocab), index, axis=1)
        length = jnp.take_along_axis(new_length, beam, axis=1)
        done = jnp.take_along_axis(done, beam, axis=1) | (token == eos_id)
        done_score = jnp.where(done, top_score, NEG_INF)
        top = jnp.argmax(done_score, axis=-1)
        top_done_score = jnp.take_along_axis(done_score, top[:, None], axis=1)[:, 0]
        better = top_done_score > best_score
        top_seq = jnp.take_along_axis(seqs, top[:, None, None], axis=1)[:, 0]
        best = jnp.where(better[:, None], top_seq, best)
        best_score = jnp.maximum(best_score, top_done_score)
        return t + 1, seqs, logp, length, done, best, best_score

    carry = (jnp.int32(0), seqs, logp, length, done, best, best_score)
    _, seqs, logp, length, _, best, best_score = jax.lax.while_loop(keep_going, step, carry)
    # An example none of whose hypotheses ended returns its best open one, cut at max_length.
    none_ended = best_score <= NEG_INF / 2
    open_score = logp[:, 0] / length_normaliser(length[:, 0], length_penalty)
    ids = jnp.where(none_ended[:, None], seqs[:, 0], best)[:, 1:]
    return ids, jnp.where(none_ended, open_score, best_score)
