"""Vision Transformer (Dosovitskiy et al. 2021) on the shared Transformer blocks.

Images are cut into `patch_size` x `patch_size` patches (a conv with that kernel and stride),
given learned position embeddings, and read out from a class token or by global average pooling.
`variant` picks the published sizes (Ti, S, B, L); `hidden_size`, `num_layers`, `num_heads` and
`mlp_dim` override them when non-zero. ViT-B/16 at 224 px with 1000 classes has 86,567,656
parameters. A checkpoint's position embeddings fit another image size through
`interpolate_position_embeddings`.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import UserInputError
from jaxdl.models import layers
from jaxdl.models.patch_conv import patch_conv
from jaxdl.models.transformer import MLP_KINDS, NORMS, Encoder

# variant -> (hidden_size, num_layers, num_heads, mlp_dim)
VARIANTS = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
}
POOLS = ("cls", "gap")


class VisionTransformer(nn.Module):
    num_classes: int
    variant: str = "S"
    patch_size: int = 16
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 0
    mlp_dim: int = 0
    pool: str = "cls"
    norm: str = "layernorm"
    mlp: str = "gelu"
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Any = jnp.float32
    batch_axis_name: Any = None  # Set by the task in shard_map mode.

    def __post_init__(self) -> None:
        layers.check_choice("variant", self.variant, tuple(VARIANTS))
        layers.check_choice("pool", self.pool, POOLS)
        layers.check_choice("norm", self.norm, NORMS)
        layers.check_choice("mlp", self.mlp, MLP_KINDS)
        layers.check_positive_int("patch_size", self.patch_size)
        for field in ("hidden_size", "num_layers", "num_heads", "mlp_dim"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserInputError(
                    f"model.{field}={value!r} must be an integer >= 0 (0: as in the variant)."
                )
        width, _, heads, _ = self.sizes
        if width % heads:
            raise UserInputError(
                f"model.hidden_size={width} is not divisible by model.num_heads={heads}; "
                "each head gets hidden_size / num_heads features."
            )
        layers.check_rate("dropout_rate", self.dropout_rate)
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """(hidden_size, num_layers, num_heads, mlp_dim) after the overrides."""
        defaults = VARIANTS[self.variant]
        given = (self.hidden_size, self.num_layers, self.num_heads, self.mlp_dim)
        return tuple(value or default for value, default in zip(given, defaults, strict=True))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        _check_image(x.shape, self.patch_size)
        width, depth, heads, mlp_dim = self.sizes
        patches = nn.Conv(
            width,
            (self.patch_size, self.patch_size),
            strides=self.patch_size,
            padding="VALID",
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=layers.named(
                nn.initializers.lecun_normal(), None, None, "conv_in", "embed"
            ),
            bias_init=layers.named(nn.initializers.zeros_init(), "embed"),
            # XLA's CPU convolution is slow here too; the parameters are the same either way.
            conv_general_dilated=patch_conv if jax.default_backend() == "cpu" else None,
            name="patch_embedding",
        )(x)
        tokens = patches.reshape(x.shape[0], -1, width)
        if self.pool == "cls":
            cls = self.param(
                "cls",
                layers.named(nn.initializers.zeros_init(), None, None, "embed"),
                (1, 1, width),
            )
            tokens = jnp.concatenate(
                [jnp.broadcast_to(cls, (x.shape[0], 1, width)).astype(tokens.dtype), tokens], 1
            )
        position = self.param(
            "position_embedding",
            layers.named(nn.initializers.normal(0.02), None, None, "embed"),
            (1, tokens.shape[1], width),
        )
        tokens = tokens + position.astype(tokens.dtype)
        tokens = layers.Dropout(self.dropout_rate, self.batch_axis_name)(
            tokens, deterministic=not train
        )
        block = {
            "num_heads": heads,
            "mlp_dim": mlp_dim,
            "norm": self.norm,
            "mlp": self.mlp,
            "dropout_rate": self.dropout_rate,
            "dtype": self.dtype,
            "batch_axis_name": self.batch_axis_name,
        }
        tokens = Encoder(depth, block, remat=self.remat, name="encoder")(tokens, train=train)
        features = tokens[:, 0] if self.pool == "cls" else tokens.mean(axis=1)
        logits = layers.dense(self.num_classes, ("embed", "classes"), dtype=self.dtype)(features)
        return logits.astype(jnp.float32)


def _check_image(shape: tuple[int, ...], patch: int) -> None:
    if len(shape) != 4:
        raise UserInputError(
            f"model 'vit' takes images of shape (batch, height, width, channels); got {shape}."
        )
    height, width = shape[1:3]
    if height % patch or width % patch:
        raise UserInputError(
            f"model.patch_size={patch} does not divide the {height}x{width} images; choose a "
            f"patch size that divides both sides."
        )


def interpolate_position_embeddings(
    embeddings: np.ndarray | jax.Array, num_tokens: int, has_cls: bool
) -> jax.Array:
    """(1, N, D) position embeddings resized to (1, num_tokens, D) for another image size.

    The patch grid's embeddings are resized bilinearly as a square image (both grids must be
    square); a class token's embedding is kept as it is.
    """
    embeddings = jnp.asarray(embeddings)
    cls, grid = (embeddings[:, :1], embeddings[:, 1:]) if has_cls else (None, embeddings)
    old_side, new_side = math.isqrt(grid.shape[1]), math.isqrt(num_tokens - int(has_cls))
    if old_side**2 != grid.shape[1] or new_side**2 != num_tokens - int(has_cls):
        raise UserInputError(
            f"position embeddings of {grid.shape[1]} patches cannot become "
            f"{num_tokens - int(has_cls)}: only square patch grids are interpolated."
        )
    square = grid.reshape(1, old_side, old_side, -1)
    resized = jax.image.resize(square, (1, new_side, new_side, square.shape[-1]), "bilinear")
    resized = resized.reshape(1, new_side * new_side, -1)
    return resized if cls is None else jnp.concatenate([cls, resized], axis=1)
