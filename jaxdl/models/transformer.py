"""The one Transformer block library: attention, MLP, norm and block, for ViT and the sequence
models alike (encoder, decoder LM, encoder-decoder).

Attention: with `implementation=None` jaxdl picks (`attention_choice`) cuDNN's fused kernel
through `jax.nn.dot_product_attention` where it applies, on a CPU its own heads-first products
(`heads_first_attention`), and JAX's XLA path elsewhere. Grouped-query attention shares each
key/value head between num_heads // num_kv_heads query heads. Every parameter carries logical axis names ('embed',
'heads', 'kv', 'mlp', 'norm'), so the mesh rules of engine/sharding.py split them (Megatron:
heads and MLP units over 'tensor'). Attention weights are computed explicitly only when asked
for, by applying with `mutable=['intermediates']`: they are sown as 'attention_weights'.

Positions: models add learned or sinusoidal (`sinusoidal_positions`) embeddings to their
inputs, or set `rotary=True` on the attention, which rotates queries and keys by their positions
(RoPE, Su et al. 2021) so that attention scores depend on relative offsets only.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models import layers
from jaxdl.models.attention import attention_choice, attention_weights, heads_first_attention

NORMS = ("layernorm", "rmsnorm")
MLP_KINDS = ("gelu", "swiglu", "gelu_exact")  # gelu: tanh approximation; gelu_exact: erf (BERT).
NORM_EPSILON = 1e-6  # Flax's default; BERT checkpoints use 1e-12.


def make_norm(kind: str, dtype: Any, epsilon: float = NORM_EPSILON) -> nn.Module:
    """LayerNorm or RMSNorm over the last axis, statistics in float32."""
    scale = layers.named(nn.initializers.ones_init(), "norm")
    if kind == "rmsnorm":
        return nn.RMSNorm(epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, scale_init=scale)
    bias = layers.named(nn.initializers.zeros_init(), "norm")
    return nn.LayerNorm(
        epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, scale_init=scale, bias_init=bias
    )


def _projection(features: tuple[int, ...], axis: Any, names: tuple, dtype: Any) -> nn.Module:
    return nn.DenseGeneral(
        features,
        axis=axis,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=layers.named(nn.initializers.lecun_normal(), *names),
        bias_init=layers.named(nn.initializers.zeros_init(), *names[-len(features) :]),
    )


def sinusoidal_positions(length: int, width: int, base: float = 10_000.0) -> jax.Array:
    """(length, width) fixed position embeddings (Vaswani et al. 2017): sin on the even
    features, cos on the odd ones, wavelengths from 2 pi to base * 2 pi."""
    if width % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {width}")
    position = jnp.arange(length, dtype=jnp.float32)[:, None]
    frequency = base ** (-jnp.arange(0, width, 2, dtype=jnp.float32) / width)
    angles = position * frequency
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(length, width)


def apply_rotary(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
    """x (B, T, heads, D) with feature pairs (i, i + D/2) rotated by angle position * base^(-2i/D).

    `positions` (B, T) or (T,) are the tokens' integer positions (a KV cache passes offsets).
    """
    half = x.shape[-1] // 2
    if x.shape[-1] % 2:
        raise ValueError(f"rotary positions need an even head size, got {x.shape[-1]}")
    frequency = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = jnp.asarray(positions, jnp.float32)[..., None] * frequency  # (B?, T, half)
    angles = jnp.broadcast_to(angles, (*x.shape[:2], half))[:, :, None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    first, second = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    rotated = jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)
    return rotated.astype(x.dtype)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention. `mask` is a boolean (B, 1 or heads, Q, K) array, True = attend."""

    num_heads: int
    num_kv_heads: int = 0  # 0: as many as num_heads (plain multi-head attention).
    dropout_rate: float = 0.0  # On the attention output (the fused kernel has no weight dropout).
    implementation: str | None = None  # None: attention_choice; or 'cudnn', 'heads_first', 'xla'.
    dtype: Any = jnp.float32
    batch_axis_name: Any = None  # Set in shard_map mode: dropout masks as for the whole batch.
    rotary: bool = False  # Rotate queries and keys by their positions (self-attention).

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        *,
        mask: jax.Array | None = None,
        causal: bool = False,
        positions: jax.Array | None = None,
        decode: bool = False,
        train: bool,
    ) -> jax.Array:
        """`decode=True`: incremental self-attention through a KV cache (see `_cached`)."""
        context = x if context is None else context
        width = x.shape[-1]
        head_dim = width // self.num_heads
        kv_heads = self.num_kv_heads or self.num_heads
        query = _projection((self.num_heads, head_dim), -1, ("embed", "heads", "kv"), self.dtype)
        key = _projection((kv_heads, head_dim), -1, ("embed", "heads", "kv"), self.dtype)
        value = _projection((kv_heads, head_dim), -1, ("embed", "heads", "kv"), self.dtype)
        q, k, v = query(x), key(context), value(context)
        cache = _KVCache(self, k) if decode else None
        if cache is not None and cache.ready:
            positions = cache.index + jnp.arange(x.shape[1])
        if self.rotary:
            # Self-attention: queries and keys share positions (0, 1, ... unless given).
            positions = jnp.arange(x.shape[1]) if positions is None else positions
            q, k = apply_rotary(q, positions), apply_rotary(k, positions)
        if cache is not None and cache.ready:
            k, v, mask = cache.update(k, v, mask)
            causal = False  # The cache's mask already hides the future.
        if self.is_mutable_collection("intermediates"):
            self.sow("intermediates", "attention_weights", attention_weights(q, k, mask, causal))
        implementation = self.implementation or attention_choice(
            jax.default_backend(), q.dtype, head_dim, mask is not None
        )
        if implementation == "heads_first":
            out = heads_first_attention(q, k, v, mask, causal)
        else:
            out = jax.nn.dot_product_attention(
                q, k, v, mask=mask, is_causal=causal, implementation=implementation
            )
        out = layers.Dropout(self.dropout_rate, self.batch_axis_name)(out, deterministic=not train)
        project = _projection((width,), (-2, -1), ("heads", "kv", "embed"), self.dtype)
        return project(out)


class _KVCache:
    """Keys and values of the tokens decoded so far, in the 'cache' collection.

    The first call in decode mode (made with a batch as long as the longest sequence to
    decode, e.g. by `model.init` or an apply with `mutable=['cache']`) only allocates zeros;
    every later call writes its tokens' keys and values at `index`, advances it, and attends
    over all cached positions up to each query's own. A prompt goes in as one call, then one
    token per call.
    """

    def __init__(self, module: nn.Module, key: jax.Array):
        self.ready = module.has_variable("cache", "cached_key")
        self.keys = module.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        self.values = module.variable("cache", "cached_value", jnp.zeros, key.shape, key.dtype)
        self.position = module.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))

    @property
    def index(self) -> jax.Array:
        return self.position.value

    def update(
        self, k: jax.Array, v: jax.Array, mask: jax.Array | None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        start, length = self.index, k.shape[1]
        self.keys.value = jax.lax.dynamic_update_slice(self.keys.value, k, (0, start, 0, 0))
        self.values.value = jax.lax.dynamic_update_slice(self.values.value, v, (0, start, 0, 0))
        self.position.value = start + length
        query_at = start + jnp.arange(length)
        visible = jnp.arange(self.keys.value.shape[1])[None, :] <= query_at[:, None]
        visible = visible[None, None]  # (1, 1, queries, cached keys)
        return self.keys.value, self.values.value, visible if mask is None else mask & visible


class MlpBlock(nn.Module):
    """width -> mlp_dim -> width, with GELU (tanh approximation or exact erf) or SwiGLU."""

    mlp_dim: int
    kind: str = "gelu"
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    batch_axis_name: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        width = x.shape[-1]
        hidden = layers.dense(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype)(x)
        if self.kind == "swiglu":
            gate = layers.dense(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype)(x)
            hidden = nn.silu(gate) * hidden
        else:
            hidden = nn.gelu(hidden, approximate=self.kind != "gelu_exact")
        dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
        hidden = dropout(hidden, deterministic=not train)
        return layers.dense(width, ("mlp", "embed"), dtype=self.dtype)(hidden)


class TransformerBlock(nn.Module):
    """Attention then MLP, each residual, normalised before (pre_norm) or after its sublayer."""

    num_heads: int
    mlp_dim: int
    num_kv_heads: int = 0
    pre_norm: bool = True
    norm: str = "layernorm"
    mlp: str = "gelu"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    implementation: str | None = None
    dtype: Any = jnp.float32
    batch_axis_name: Any = None
    rotary: bool = False
    norm_epsilon: float = NORM_EPSILON
    # Dropout on the MLP's hidden units; None: dropout_rate. BERT has none there (0.0).
    mlp_dropout_rate: float | None = None

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array | None = None,
        causal: bool = False,
        train: bool = False,
        decode: bool = False,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """`decode` and `positions` go to the attention (KV cache; rotary positions)."""
        attention = MultiHeadAttention(
            self.num_heads,
            self.num_kv_heads,
            self.attention_dropout_rate,
            self.implementation,
            self.dtype,
            self.batch_axis_name,
            rotary=self.rotary,
        )
        mlp_dropout = self.dropout_rate if self.mlp_dropout_rate is None else self.mlp_dropout_rate
        mlp = MlpBlock(self.mlp_dim, self.mlp, mlp_dropout, self.dtype, self.batch_axis_name)
        for sublayer in (
            lambda y: attention(
                y, mask=mask, causal=causal, positions=positions, decode=decode, train=train
            ),
            lambda y: mlp(y, train=train),
        ):
            normalise = make_norm(self.norm, self.dtype, self.norm_epsilon)
            y = sublayer(normalise(x) if self.pre_norm else x)
            dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
            x = x + dropout(y, deterministic=not train)
            x = x if self.pre_norm else normalise(x)
        return x


class _LayerStep(nn.Module):
    """One block as a step of `nn.scan` over layers: (x, broadcast args) -> (x, nothing)."""

    block: dict
    causal: bool
    train: bool
    decode: bool

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array | None, positions: jax.Array | None
    ) -> tuple[jax.Array, None]:
        block = TransformerBlock(**self.block, name="block")
        return block(x, mask, self.causal, self.train, self.decode, positions), None


def scanned_blocks(
    block: dict, num_layers: int, *, remat: bool, causal: bool, train: bool, decode: bool = False
) -> nn.Module:
    """`num_layers` TransformerBlocks as one `nn.scan`: the step compiles once, not once per
    layer, and every parameter (and KV cache) gets a leading 'layers' axis. Call it as
    `x, _ = stack(x, mask, positions)` inside a compact method."""
    step = nn.remat(_LayerStep) if remat else _LayerStep
    scanned = nn.scan(
        step,
        variable_axes={"params": 0, "cache": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast),
        length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return scanned(block=block, causal=causal, train=train, decode=decode, name="layers")


class Encoder(nn.Module):
    """`num_layers` blocks, then a final norm (pre-norm only). `remat` recomputes each block's
    activations in the backward pass instead of holding them (less memory, more compute);
    `scan` runs the blocks as one `nn.scan` over layers (see `scanned_blocks`)."""

    num_layers: int
    block: dict  # TransformerBlock's fields.
    remat: bool = False
    scan: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, *, mask: jax.Array | None = None, causal: bool = False, train: bool
    ) -> jax.Array:
        if self.scan:
            stack = scanned_blocks(
                self.block, self.num_layers, remat=self.remat, causal=causal, train=train
            )
            x, _ = stack(x, mask, None)
        else:
            # Arguments 3 and 4 (counting self): causal and train are Python values.
            block_type = (
                nn.remat(TransformerBlock, static_argnums=(3, 4))
                if self.remat
                else TransformerBlock
            )
            for index in range(self.num_layers):
                x = block_type(**self.block, name=f"block_{index}")(x, mask, causal, train)
        if self.block.get("pre_norm", True):
            epsilon = self.block.get("norm_epsilon", NORM_EPSILON)
            x = make_norm(self.block.get("norm", "layernorm"), self.block.get("dtype"), epsilon)(x)
        return x


class DecoderBlock(nn.Module):
    """Pre-norm decoder block of an encoder-decoder (T5): causal self-attention, cross-attention
    over the encoder's outputs, then the MLP, each residual.

    `source_mask` (B, S) is True at real source tokens; padded ones get no attention. Rotary
    positions (when set) rotate the self-attention only: queries and keys of the
    cross-attention live in different sequences, so their offsets mean nothing.
    """

    num_heads: int
    mlp_dim: int
    num_kv_heads: int = 0
    norm: str = "layernorm"
    mlp: str = "gelu"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    implementation: str | None = None
    dtype: Any = jnp.float32
    batch_axis_name: Any = None
    rotary: bool = False

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        encoded: jax.Array,
        source_mask: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        def attention(rotary: bool, name: str) -> MultiHeadAttention:
            return MultiHeadAttention(
                self.num_heads,
                self.num_kv_heads,
                self.attention_dropout_rate,
                self.implementation,
                self.dtype,
                self.batch_axis_name,
                rotary=rotary,
                name=name,
            )

        self_attention = attention(self.rotary, "self_attention")
        cross_attention = attention(False, "cross_attention")
        mlp = MlpBlock(self.mlp_dim, self.mlp, self.dropout_rate, self.dtype, self.batch_axis_name)
        cross_mask = None if source_mask is None else source_mask[:, None, None, :]
        for sublayer in (
            lambda y: self_attention(y, causal=True, train=train),
            lambda y: cross_attention(y, encoded, mask=cross_mask, train=train),
            lambda y: mlp(y, train=train),
        ):
            y = sublayer(make_norm(self.norm, self.dtype)(x))
            dropout = layers.Dropout(self.dropout_rate, self.batch_axis_name)
            x = x + dropout(y, deterministic=not train)
        return x


class Decoder(nn.Module):
    """`num_layers` DecoderBlocks over the target tokens' embeddings, then a final norm."""

    num_layers: int
    block: dict  # DecoderBlock's fields.
    remat: bool = False

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        encoded: jax.Array,
        *,
        source_mask: jax.Array | None = None,
        train: bool,
    ) -> jax.Array:
        # Argument 4 (counting self) is train, a Python value.
        block_type = nn.remat(DecoderBlock, static_argnums=(4,)) if self.remat else DecoderBlock
        for index in range(self.num_layers):
            x = block_type(**self.block, name=f"block_{index}")(x, encoded, source_mask, train)
        return make_norm(self.block.get("norm", "layernorm"), self.block.get("dtype"))(x)
