"""Autoregressive generation from a decoder with a KV cache: greedy, temperature, top-k, top-p.

Any Linen model whose `__call__(tokens, train=False, decode=True)` keeps a 'cache' collection
(jaxdl.models.gpt.DecoderLM) works: the prompt goes in as one call, then one token per call.
Every draw takes its own key, `fold_in(key, position)`, so a key fixes the whole sample, and
the same key gives the same text on every run.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def init_cache(model: nn.Module, params: Any, batch_size: int, length: int) -> Any:
    """Zeroed caches for `batch_size` sequences of `length` tokens; shapes from an abstract
    allocating call, so nothing is computed."""
    dummy = jnp.zeros((batch_size, length), jnp.int32)

    def allocate(params: Any) -> Any:
        _, variables = model.apply(
            {"params": params}, dummy, train=False, decode=True, mutable=["cache"]
        )
        return variables["cache"]

    shapes = jax.eval_shape(allocate, params)
    return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)


def filter_logits(logits: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """(B, V) logits with every token outside the top k, or outside the smallest set whose
    probability reaches top_p (nucleus), set to -inf. top_k=0 and top_p=1 keep everything."""
    if top_k:
        kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[:, ::-1]
        probabilities = jax.nn.softmax(ordered, axis=-1)
        # A token stays when the tokens more likely than it hold less than top_p together.
        before = jnp.cumsum(probabilities, axis=-1) - probabilities
        kept = jnp.where(before < top_p, ordered, jnp.inf).min(axis=-1, keepdims=True)
        logits = jnp.where(logits < kept, -jnp.inf, logits)
    return logits


def choose_tokens(
    key: jax.Array, logits: jax.Array, temperature: float, top_k: int, top_p: float
) -> jax.Array:
    """(B,) next tokens: the most likely with temperature 0, else a draw from the filtered,
    temperature-scaled distribution."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits / temperature, top_k, top_p)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


@partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k", "top_p"))
def generate(
    model: nn.Module,
    params: Any,
    prompt: jax.Array,
    key: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """(B, max_new_tokens) int32 tokens continuing each (B, P) prompt (P >= 1)."""
    batch, prompt_length = prompt.shape
    cache = init_cache(model, params, batch, prompt_length + max_new_tokens)

    def run(tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
        logits, variables = model.apply(
            {"params": params, "cache": cache}, tokens, train=False, decode=True, mutable=["cache"]
        )
        return logits[:, -1], variables["cache"]

    logits, cache = run(prompt, cache)

    def step(carry: tuple[jax.Array, Any], position: jax.Array) -> tuple[Any, jax.Array]:
        logits, cache = carry
        token = choose_tokens(jax.random.fold_in(key, position), logits, temperature, top_k, top_p)
        logits, cache = run(token[:, None], cache)
        return (logits, cache), token

    _, tokens = jax.lax.scan(step, (logits, cache), prompt_length + jnp.arange(max_new_tokens))
    return tokens.T
