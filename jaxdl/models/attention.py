"""The computations behind the block library's attention (transformer.py), and which one runs
where: cuDNN's fused kernel, XLA's path (both through `jax.nn.dot_product_attention`), or
heads-first products on a CPU."""

from typing import Any

import jax
import jax.numpy as jnp


def attention_choice(backend: str, dtype: Any, head_dim: int, masked: bool) -> str:
    """The attention implementation `implementation=None` runs: 'cudnn', 'heads_first' or 'xla'.

    JAX's own default is XLA everywhere, which on a GPU writes the (B, heads, T, T) scores to
    memory and back: a third of GPT-2 small's step on an H200. cuDNN takes half precision, head
    sizes that are multiples of 8 up to 128, and (here) causal or no masking; explicit masks
    (padding, KV cache) keep the XLA path, which takes any mask. On a CPU, XLA's path copies the
    (B, heads, T, T) probabilities between layouts around its products; `heads_first_attention`
    (below) copies fewer of them. TPUs keep XLA's path.
    """
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    fits = head_dim % 8 == 0 and head_dim <= 128
    if backend == "gpu" and half and fits and not masked:
        return "cudnn"
    return "heads_first" if backend == "cpu" else "xla"


def heads_first_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, causal: bool
) -> jax.Array:
    """`jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal)` with the heads moved
    in front of the positions before the products, so that batch and head are the leading
    (batch) dimensions of every product, forward and backward.

    q (B, T, heads, D); k and v (B, S, kv_heads, D); mask (B, 1 or heads, T, S), True = attend.
    JAX's XLA path contracts 'BTNH,BSNH->BNTS' as written, and XLA's CPU backend then copies the
    probabilities (16 MiB per layer of the benchmark's GPT) into other layouts for the forward
    products as well as the backward ones; here the forward products read them in place.
    Measured on 2 cores, GPT's attention forward and backward: 87 -> 60 ms per layer, equal to
    3e-6; the whole GPT step's layout copies 322 -> 243 ms.
    """
    batch, length, heads, depth = q.shape
    kv_heads = k.shape[2]
    group = heads // kv_heads
    # (B, kv_heads, group, T, D): each key/value head with the query heads that share it.
    q = q.reshape(batch, length, kv_heads, group, depth).transpose(0, 2, 3, 1, 4)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # (B, kv_heads, S, D)
    logits = jnp.einsum("bkgtd,bksd->bkgts", q, k, preferred_element_type=jnp.float32)
    logits = logits * jnp.float32(1 / depth**0.5)
    if causal:
        keep = jnp.tril(jnp.ones(logits.shape[-2:], bool))  # Query i sees keys 0..i, as in JAX.
        mask = keep if mask is None else mask & keep
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B or 1, heads or 1, T, S)
        mask = jnp.broadcast_to(mask, (mask.shape[0], heads, *logits.shape[-2:]))
        mask = mask.reshape(mask.shape[0], kv_heads, group, *logits.shape[-2:])
        logits = jnp.where(mask, logits, jnp.float32(-0.7 * jnp.finfo(jnp.float32).max))
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bksd->bkgtd", probs, v)
    return out.transpose(0, 3, 1, 2, 4).reshape(batch, length, heads, depth)


def attention_weights(
    q: jax.Array, k: jax.Array, mask: jax.Array | None, causal: bool
) -> jax.Array:
    """(B, heads, Q, K) softmax weights, as dot_product_attention computes them."""
    repeat = q.shape[-2] // k.shape[-2]
    k = jnp.repeat(k, repeat, axis=-2)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(q.shape[-1])
    if causal:
        keep = jnp.tril(jnp.ones(logits.shape[-2:], bool))
        mask = keep if mask is None else mask & keep
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)
