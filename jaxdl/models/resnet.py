"""ResNets: the ImageNet family (18/34/50/101/152) and the CIFAR family (20/32/44/56/110).

`depth` picks the block layout. The ImageNet depths have four stages of 64-512 channels (basic
blocks for 18/34, bottleneck blocks with 4x expansion for 50+, the stride on the bottleneck's
3x3 conv as in torchvision's v1.5) and projection shortcuts. The CIFAR depths (6n + 2) have three
stages of 16-64 channels of basic blocks and parameter-free shortcuts (subsample and zero-pad
the channels: option A of He et al. 2015), which is what gives the published 0.27M parameters
of ResNet-20. `stem` is independent: 'imagenet' (7x7 stride-2 conv, 3x3 stride-2 max-pool) or
'cifar' (one 3x3 conv), so a CIFAR-style ResNet-18 is `depth=18, stem='cifar'`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError
from jaxdl.models import layers

# depth -> (block kind, blocks per stage)
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_DEPTHS = {depth: ("basic", ((depth - 2) // 6,) * 3) for depth in (20, 32, 44, 56, 110)}
IMAGENET_WIDTHS, CIFAR_WIDTHS = (64, 128, 256, 512), (16, 32, 64)
STEMS = ("auto", "imagenet", "cifar")
BOTTLENECK_EXPANSION = 4


def _same(kernel: int) -> list[tuple[int, int]]:
    # torchvision's symmetric padding: with stride 2, lax's 'SAME' would pad one side only.
    return [((kernel - 1) // 2, (kernel - 1) // 2)] * 2


class _Block(nn.Module):
    """One residual block, post-activation (conv-BN-ReLU) or pre-activation (BN-ReLU-conv)."""

    features: int
    strides: int
    kind: str
    projection: bool  # False: the CIFAR family's parameter-free shortcut.
    preact: bool
    zero_init_last: bool
    dtype: Any
    batch_axis_name: Any

    def _norm(self, train: bool, zero: bool = False) -> nn.BatchNorm:
        return layers.batch_norm(
            train=train,
            dtype=self.dtype,
            name="conv_out",
            axis_name=self.batch_axis_name,
            zero_scale=zero,
        )

    def _conv(self, features: int, kernel: int, strides: int = 1, zero: bool = False) -> nn.Conv:
        return layers.conv(
            features,
            (kernel, kernel),
            strides=strides,
            padding=_same(kernel),
            use_bias=False,
            dtype=self.dtype,
            zero_init=zero,
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.kind == "basic":
            shape = [(self.features, 3, self.strides), (self.features, 3, 1)]
        else:
            shape = [(self.features, 1, 1), (self.features, 3, self.strides)]
            shape.append((self.features * BOTTLENECK_EXPANSION, 1, 1))
        out_features = shape[-1][0]
        raw = x
        if self.preact:
            x = nn.relu(self._norm(train)(x))
        # A projection sees what the branch sees; an identity (or option A) the raw input.
        changes = self.strides != 1 or raw.shape[-1] != out_features
        inputs = x if self.preact and self.projection and changes else raw
        y = x
        for index, (features, kernel, strides) in enumerate(shape):
            last = index == len(shape) - 1
            if self.preact:
                if index:
                    y = nn.relu(self._norm(train)(y))
                y = self._conv(features, kernel, strides, zero=last and self.zero_init_last)(y)
            else:
                y = self._conv(features, kernel, strides)(y)
                y = self._norm(train, zero=last and self.zero_init_last)(y)
                y = y if last else nn.relu(y)
        shortcut = self._shortcut(inputs, out_features, train)
        return y + shortcut if self.preact else nn.relu(y + shortcut)

    def _shortcut(self, x: jax.Array, features: int, train: bool) -> jax.Array:
        if self.strides == 1 and x.shape[-1] == features:
            return x
        if self.projection:
            x = self._conv(features, 1, self.strides)(x)
            return x if self.preact else self._norm(train)(x)
        x = x[:, :: self.strides, :: self.strides, :]
        extra = features - x.shape[-1]
        return jnp.pad(x, [(0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)])


class ResNet(nn.Module):
    """A ResNet for `(B, H, W, C)` images; see the module docstring for the presets.

    `width` multiplies every stage's channels. `preact` uses pre-activation blocks (He et al.
    2016). `zero_init_last_bn` starts every residual branch at zero (its last batch-norm
    scale; in the pre-activation variant, which ends a branch with a conv, that conv's kernel),
    so each block starts as the identity.
    """

    num_classes: int
    depth: int = 18
    stem: str = "auto"
    width: float = 1.0
    preact: bool = False
    zero_init_last_bn: bool = False
    dtype: Any = jnp.float32
    batch_axis_name: Any = None  # Set by the task in shard_map mode (synchronised batch norm).

    def __post_init__(self) -> None:
        depths = sorted({*IMAGENET_DEPTHS, *CIFAR_DEPTHS})
        if self.depth not in depths:
            raise UserInputError(
                f"model.depth={self.depth!r} is not a ResNet preset; choose one of "
                f"{', '.join(map(str, depths))}."
            )
        layers.check_choice("stem", self.stem, STEMS)
        if isinstance(self.width, bool) or not isinstance(self.width, int | float):
            raise UserInputError(f"model.width={self.width!r} must be a positive number.")
        if not 0 < self.width <= 16:
            raise UserInputError(f"model.width={self.width!r} must be in (0, 16].")
        layers.resolve_dtype(self.dtype)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if x.ndim != 4:
            raise UserInputError(
                f"model 'resnet' takes images of shape (batch, height, width, channels); got "
                f"{x.shape}. Use model.name='cnn' for 1-D signals."
            )
        cifar = self.depth in CIFAR_DEPTHS
        kind, stages = (CIFAR_DEPTHS if cifar else IMAGENET_DEPTHS)[self.depth]
        widths = [
            max(1, round(self.width * w)) for w in (CIFAR_WIDTHS if cifar else IMAGENET_WIDTHS)
        ]
        stem = ("cifar" if cifar else "imagenet") if self.stem == "auto" else self.stem
        norm = lambda: layers.batch_norm(  # noqa: E731
            train=train, dtype=self.dtype, name="conv_out", axis_name=self.batch_axis_name
        )
        kernel, strides = (7, 2) if stem == "imagenet" else (3, 1)
        x = layers.conv(
            widths[0],
            (kernel, kernel),
            strides=strides,
            padding=_same(kernel),
            use_bias=False,
            dtype=self.dtype,
        )(x)
        if not self.preact:
            x = nn.relu(norm()(x))
        if stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_same(3))
        for stage, (blocks, features) in enumerate(zip(stages, widths, strict=True)):
            for index in range(blocks):
                x = _Block(
                    features,
                    strides=2 if stage > 0 and index == 0 else 1,
                    kind=kind,
                    projection=not cifar,
                    preact=self.preact,
                    zero_init_last=self.zero_init_last_bn,
                    dtype=self.dtype,
                    batch_axis_name=self.batch_axis_name,
                )(x, train=train)
        if self.preact:
            x = nn.relu(norm()(x))
        x = x.mean(axis=(1, 2))
        x = layers.dense(self.num_classes, ("embed", "classes"), dtype=self.dtype)(x)
        return x.astype(jnp.float32)
