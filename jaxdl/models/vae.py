"""Variational autoencoder (Kingma and Welling 2014) with MLP encoder and decoder.

The encoder gives the mean and log-variance of a Gaussian q(z | x); the prior is N(0, I); the
decoder gives the parameters of p(x | z) for every pixel: Bernoulli logits (pixels in [0, 1],
the usual choice for grey digits), or a Gaussian mean with a learned per-pixel log scale. With
`conditional`, both networks also read the one-hot label (Sohn et al. 2015), so samples can be
asked for by class. The latent noise is an argument, never drawn inside, so every call is a
pure function of its inputs; `encode`, `decode` and `log_scale` are separate entry points
(`model.apply(variables, ..., method='decode')`) for evaluation and sampling.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.models import layers

DECODERS = ("bernoulli", "gaussian")


class VAE(nn.Module):
    num_classes: int
    image_shape: tuple[int, ...] = ()  # Set by the task from the dataset, not by the config.
    latent_dim: int = 16
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "gelu"
    decoder: str = "bernoulli"
    conditional: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        layers.check_positive_int("latent_dim", self.latent_dim)
        layers.check_sizes("hidden_sizes", self.hidden_sizes, allow_empty=False)
        layers.check_choice("decoder", self.decoder, DECODERS)
        layers.activation(self.activation)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    def setup(self) -> None:
        sizes = tuple(self.hidden_sizes)
        self.encoder = [self._dense(size) for size in sizes]
        self.mean_head = self._dense(self.latent_dim, ("mlp", "embed"))
        self.log_var_head = self._dense(self.latent_dim, ("mlp", "embed"))
        self.decoder_layers = [self._dense(size) for size in reversed(sizes)]
        self.output_head = self._dense(int(np.prod(self.image_shape)), ("mlp", "embed"))
        if self.decoder == "gaussian":
            self.log_scales = self.param(
                "log_scale",
                layers.named(nn.initializers.zeros_init(), None),
                (int(np.prod(self.image_shape)),),
            )

    def _dense(self, features: int, names: tuple[str, str] = ("embed", "mlp")) -> nn.Dense:
        return layers.dense(features, names, dtype=self.dtype)

    def _with_label(self, x: jax.Array, labels: jax.Array | None) -> jax.Array:
        if not self.conditional:
            return x
        if labels is None:
            raise ValueError("a conditional VAE needs the labels")
        return jnp.concatenate([x, jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)], -1)

    def encode(self, x: jax.Array, labels: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(mean, log-variance) of q(z | x), each (B, latent_dim), float32."""
        act = layers.activation(self.activation)
        h = self._with_label(x.reshape(x.shape[0], -1).astype(self.dtype), labels)
        for dense in self.encoder:
            h = act(dense(h))
        return (
            self.mean_head(h).astype(jnp.float32),
            self.log_var_head(h).astype(jnp.float32),
        )

    def decode(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """p(x | z)'s logits (Bernoulli) or mean (Gaussian), shaped like the images, float32."""
        act = layers.activation(self.activation)
        h = self._with_label(z.astype(self.dtype), labels)
        for dense in self.decoder_layers:
            h = act(dense(h))
        out = self.output_head(h).astype(jnp.float32)
        return out.reshape(z.shape[0], *self.image_shape)

    def log_scale(self) -> jax.Array:
        """The Gaussian decoder's per-pixel log standard deviation, shaped like one image."""
        return self.log_scales.reshape(self.image_shape)

    def __call__(
        self, x: jax.Array, noise: jax.Array, labels: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(decoder output, mean, log-variance) with z = mean + exp(log-variance / 2) * noise."""
        mean, log_var = self.encode(x, labels)
        z = mean + jnp.exp(0.5 * log_var) * noise
        return self.decode(z, labels), mean, log_var
