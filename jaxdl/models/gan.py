"""Generative adversarial network (Goodfellow et al. 2014), DCGAN-shaped (Radford et al. 2016).

The generator maps noise z (and, when `conditional`, the one-hot label concatenated to it) to an
image: a dense layer to a small feature map, then stages that each double the side (nearest
upsampling and a 3x3 convolution, which avoids the checkerboard artefacts of transposed
convolutions) and halve the width, then a 3x3 convolution to the image's channels and a sigmoid,
since the data are pixels in [0, 1]. The number of stages comes from `image_shape`: the side is
halved while it stays even and at least 4, so 8x8 starts from 4x4, 28x28 from 7x7, 32x32 from
4x4. The generator normalises with pixel norm (Karras et al. 2018) rather than batch norm: it is
per example, so samples do not depend on the batch they are drawn in and there are no running
statistics to keep.

The discriminator mirrors it: a 3x3 convolution, then one stride-2 4x4 convolution per stage
(leaky ReLU after each), flattened into one logit. A conditional discriminator is a projection
discriminator (Miyato and Koyama 2018): logit + <embed(y), features>. With `spectral_norm`
(Miyato et al. 2018) every discriminator layer divides its kernel by its largest singular value,
estimated by one power iteration per call from a vector kept in the 'batch_stats' collection;
the task sets this field from `task.regularizer`.

`generate` and `discriminate` are the entry points (`model.apply(variables, ..., method=...)`);
noise is an argument, never drawn inside, so every call is a pure function of its inputs.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import meta

from jaxdl.models import layers

MIN_BASE_SIDE = 4  # The generator's first feature map is at least this wide (DCGAN's 4x4).
MAX_WIDTH_FACTOR = 8  # Widths double per stage up to 8x the base width (DCGAN: 64 -> 512).
LEAKY_SLOPE = 0.2
SPECTRAL_NORM_COLLECTION = "batch_stats"


def stage_plan(image_shape: tuple[int, ...]) -> tuple[tuple[int, int], int]:
    """((height, width) of the generator's first feature map, number of 2x stages)."""
    height, width = image_shape[0], image_shape[1]
    stages = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= MIN_BASE_SIDE:
        height, width, stages = height // 2, width // 2, stages + 1
    return (height, width), stages


def _width(base: int, doublings: int) -> int:
    return base * min(2**doublings, MAX_WIDTH_FACTOR)


def pixel_norm(x: jax.Array, epsilon: float = 1e-8) -> jax.Array:
    """Each pixel's feature vector scaled to unit root mean square."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + epsilon)


def _l2_normalize(x: jax.Array, epsilon: float = 1e-12) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x)) + epsilon)


class SpectralNorm(nn.Module):
    """Wraps a Dense or Conv layer so that it uses kernel / sigma(kernel).

    Flax's own `nn.SpectralNorm` cannot read the logically partitioned (boxed) parameters that
    every layer here has, so this one unboxes the kernel, normalises it and boxes it again. The
    kernel is seen as a matrix (everything but the output axis, output); `u`, the estimate of
    its leading right singular vector, takes one power-iteration step per call and is stored
    only when `update_stats` (the discriminator's training step), so evaluation is pure.
    """

    layer: nn.Module

    @nn.compact
    def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
        def normalize(variables: dict) -> dict:
            params = variables["params"]
            boxed = params["kernel"]
            kernel = meta.unbox(boxed)
            matrix = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
            u = self.variable(
                SPECTRAL_NORM_COLLECTION,
                "u",
                lambda: _l2_normalize(jax.random.normal(self.make_rng("params"), matrix.shape[1:])),
            )
            v = jax.lax.stop_gradient(_l2_normalize(matrix @ u.value))
            new_u = jax.lax.stop_gradient(_l2_normalize(matrix.T @ v))
            sigma = v @ matrix @ new_u  # Differentiated: the gradient sees the normalisation.
            if update_stats and not self.is_initializing():
                u.value = new_u
            scaled = (kernel / jnp.maximum(sigma, 1e-12)).astype(kernel.dtype)
            if isinstance(boxed, meta.AxisMetadata):
                scaled = boxed.replace_boxed(scaled)
            return {**variables, "params": {**params, "kernel": scaled}}

        return nn.map_variables(
            lambda layer, inputs: layer(inputs),
            "params",
            trans_in_fn=normalize,
            init=self.is_initializing(),
            mutable=True,
        )(self.layer, x)


def _one_hot(labels: jax.Array | None, num_classes: int, dtype: Any) -> jax.Array:
    if labels is None:
        raise ValueError("a conditional GAN needs the labels")
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


class Generator(nn.Module):
    num_classes: int
    image_shape: tuple[int, ...]
    features: int
    conditional: bool
    dtype: Any

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None) -> jax.Array:
        (height, width), stages = stage_plan(self.image_shape)
        x = z.astype(self.dtype)
        if self.conditional:
            x = jnp.concatenate([x, _one_hot(labels, self.num_classes, x.dtype)], axis=-1)
        channels = _width(self.features, stages)
        x = layers.dense(height * width * channels, ("embed", "mlp"), dtype=self.dtype)(x)
        x = nn.relu(pixel_norm(x.reshape(z.shape[0], height, width, channels)))
        for stage in range(stages):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # Nearest-neighbour upsampling.
            x = self._conv(_width(self.features, stages - stage - 1))(x)
            x = nn.relu(pixel_norm(x))
        x = self._conv(self.image_shape[-1])(x)
        return jax.nn.sigmoid(x.astype(jnp.float32))

    def _conv(self, features: int) -> nn.Conv:
        return layers.conv(features, (3, 3), padding="SAME", use_bias=True, dtype=self.dtype)


class Discriminator(nn.Module):
    num_classes: int
    image_shape: tuple[int, ...]
    features: int
    conditional: bool
    spectral_norm: bool
    dtype: Any

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None, update_stats: bool
    ) -> jax.Array:
        def apply(layer: nn.Module, x: jax.Array) -> jax.Array:
            if self.spectral_norm:
                return SpectralNorm(layer)(x, update_stats=update_stats)
            return layer(x)

        _, stages = stage_plan(self.image_shape)
        x = images.astype(self.dtype)
        x = nn.leaky_relu(apply(self._conv(self.features, 3, 1, "SAME"), x), LEAKY_SLOPE)
        for stage in range(stages):
            # 4x4, stride 2, padding 1: exactly half of an even side.
            layer = self._conv(_width(self.features, stage + 1), 4, 2, ((1, 1), (1, 1)))
            x = nn.leaky_relu(apply(layer, x), LEAKY_SLOPE)
        features = x.reshape(x.shape[0], -1)
        logit = apply(layers.dense(1, ("embed", "classes"), dtype=self.dtype), features)[:, 0]
        if self.conditional:
            one_hot = _one_hot(labels, self.num_classes, features.dtype)
            embed = layers.dense(
                features.shape[-1], ("classes", "embed"), use_bias=False, dtype=self.dtype
            )
            logit = logit + jnp.sum(apply(embed, one_hot) * features, axis=-1)
        return logit.astype(jnp.float32)

    def _conv(self, features: int, size: int, strides: int, padding: Any) -> nn.Conv:
        return layers.conv(
            features,
            (size, size),
            strides=strides,
            padding=padding,
            use_bias=True,
            dtype=self.dtype,
        )


class GAN(nn.Module):
    num_classes: int
    image_shape: tuple[int, ...] = ()  # Set by the task from the dataset, not by the config.
    latent_dim: int = 64
    generator_features: int = 64  # Width of the generator's last stage (x2 per stage inward).
    discriminator_features: int = 64  # Width of the discriminator's first layer.
    conditional: bool = False
    spectral_norm: bool = False  # Set by the task from task.regularizer, not by the config.
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        layers.check_positive_int("latent_dim", self.latent_dim)
        layers.check_positive_int("generator_features", self.generator_features)
        layers.check_positive_int("discriminator_features", self.discriminator_features)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    def setup(self) -> None:
        shared = dict(
            num_classes=self.num_classes,
            image_shape=tuple(self.image_shape),
            conditional=self.conditional,
            dtype=self.dtype,
        )
        self.generator = Generator(features=self.generator_features, **shared)
        self.discriminator = Discriminator(
            features=self.discriminator_features, spectral_norm=self.spectral_norm, **shared
        )

    def generate(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """Images (B, *image_shape) in [0, 1], float32, from noise z (B, latent_dim)."""
        return self.generator(z, labels)

    def discriminate(
        self, images: jax.Array, labels: jax.Array | None = None, update_stats: bool = False
    ) -> jax.Array:
        """One logit per image (B,), float32: high means real. `update_stats` advances the
        spectral norm's power iteration (apply with mutable=['batch_stats'])."""
        return self.discriminator(images, labels, update_stats)

    def __call__(
        self, images: jax.Array, z: jax.Array, labels: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """(generated images, logits of `images`): builds both networks at init."""
        return self.generate(z, labels), self.discriminate(images, labels)
