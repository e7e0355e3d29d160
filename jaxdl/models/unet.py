"""The denoising U-Net of DDPM (Ho et al. 2020), sized by the config.

Levels of residual blocks at falling resolutions (`channel_mults`, one per level), each block
reading a sinusoidal embedding of the noising step; self-attention (the block library's
MultiHeadAttention over the H x W positions) at the resolutions in `attention_resolutions`;
a middle of residual, attention, residual; then the same levels back up, each block also
reading the matching block's output from the way down. Group norm, SiLU, dropout in the blocks.
The output has the image's shape and starts at zero (its last convolution is zero-initialised),
so the first predictions are the mean of what is predicted.

With `conditional`, the step embedding also gets a learned class embedding. Class id
`num_classes` (one past the last) is the "no class" of classifier-free guidance (Ho and
Salimans 2022): the task trains with labels dropped to it, and samples by mixing the
predictions with and without the class.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models import layers
from jaxdl.models.transformer import MultiHeadAttention


def step_embedding(t: jax.Array, width: int, max_period: float = 10_000.0) -> jax.Array:
    """(B, width) sines and cosines of the noising steps t at geometric frequencies."""
    half = width // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _group_norm(channels: int, dtype: Any) -> nn.GroupNorm:
    # 32 groups as in DDPM, fewer for narrow layers: every group holds at least 4 channels.
    groups = next(
        g for g in (32, 16, 8, 4, 2, 1) if g == 1 or (channels % g == 0 and channels // g >= 4)
    )
    return nn.GroupNorm(num_groups=groups, dtype=dtype, param_dtype=jnp.float32)


def _conv(features: int, dtype: Any, *, strides: int = 1, zero_init: bool = False) -> nn.Conv:
    return layers.conv(
        features,
        (3, 3),
        padding="SAME",
        use_bias=True,
        dtype=dtype,
        strides=strides,
        zero_init=zero_init,
    )


class ResidualBlock(nn.Module):
    features: int
    dropout_rate: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array, *, train: bool) -> jax.Array:
        h = _conv(self.features, self.dtype)(nn.silu(_group_norm(x.shape[-1], self.dtype)(x)))
        shift = layers.dense(self.features, ("mlp", "embed"), dtype=self.dtype)(embedding)
        h = h + shift[:, None, None, :]
        h = nn.silu(_group_norm(self.features, self.dtype)(h))
        h = layers.Dropout(self.dropout_rate)(h, deterministic=not train)
        h = _conv(self.features, self.dtype, zero_init=True)(h)
        if x.shape[-1] != self.features:
            x = layers.conv(self.features, (1, 1), padding="SAME", use_bias=True, dtype=self.dtype)(
                x
            )
        return x + h


class AttentionBlock(nn.Module):
    num_heads: int
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        h = _group_norm(channels, self.dtype)(x).reshape(batch, height * width, channels)
        h = MultiHeadAttention(num_heads=self.num_heads, dtype=self.dtype)(h, train=False)
        return x + h.reshape(x.shape)


class UNet(nn.Module):
    num_classes: int
    image_shape: tuple[int, ...] = ()  # Set by the task from the dataset, not by the config.
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4,)  # Sides (in pixels) with self-attention.
    num_heads: int = 4
    dropout_rate: float = 0.1
    conditional: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        layers.check_positive_int("base_channels", self.base_channels)
        layers.check_sizes("channel_mults", self.channel_mults, allow_empty=False)
        layers.check_positive_int("num_res_blocks", self.num_res_blocks)
        layers.check_positive_int("num_heads", self.num_heads)
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        if self.image_shape:
            side = self.image_shape[0]
            halvings = len(self.channel_mults) - 1
            if side % (2**halvings):
                raise ValueError(
                    f"channel_mults has {len(self.channel_mults)} levels, which halve the side "
                    f"{halvings} times; {side} is not divisible by {2**halvings}: use fewer levels."
                )
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jax.Array, t: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        """The prediction (noise or velocity) for noisy images x (B, H, W, C) at steps t (B,);
        `labels` (B,) in 0..num_classes, num_classes meaning none (conditional models only)."""
        width = 4 * self.base_channels
        embedding = step_embedding(t, self.base_channels)
        embedding = layers.dense(width, ("embed", "mlp"), dtype=self.dtype)(embedding)
        embedding = layers.dense(width, ("mlp", "embed"), dtype=self.dtype)(nn.silu(embedding))
        if self.conditional:
            if labels is None:
                labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32)
            classes = nn.Embed(self.num_classes + 1, width, param_dtype=jnp.float32)
            embedding = embedding + classes(labels).astype(embedding.dtype)
        embedding = nn.silu(embedding)

        def block(h: jax.Array, features: int) -> jax.Array:
            h = ResidualBlock(features, self.dropout_rate, self.dtype)(h, embedding, train=train)
            if h.shape[1] in self.attention_resolutions:
                h = AttentionBlock(self.num_heads, self.dtype)(h)
            return h

        h = _conv(self.base_channels, self.dtype)(x.astype(self.dtype))
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = block(h, mult * self.base_channels)
                skips.append(h)
            if level < len(self.channel_mults) - 1:
                h = _conv(h.shape[-1], self.dtype, strides=2)(h)
                skips.append(h)
        h = ResidualBlock(h.shape[-1], self.dropout_rate, self.dtype)(h, embedding, train=train)
        h = AttentionBlock(self.num_heads, self.dtype)(h)
        h = ResidualBlock(h.shape[-1], self.dropout_rate, self.dtype)(h, embedding, train=train)
        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), mult * self.base_channels)
            if level > 0:
                batch, height, width_, channels = h.shape
                h = jax.image.resize(h, (batch, 2 * height, 2 * width_, channels), "nearest")
                h = _conv(channels, self.dtype)(h)
        h = nn.silu(_group_norm(h.shape[-1], self.dtype)(h))
        out = _conv(x.shape[-1], self.dtype, zero_init=True)(h)
        return out.astype(jnp.float32)
