"""The suite's reference models, as jaxdl experiment configs, with their analytic FLOPs.

Each one is built by jaxdl's own model registry, task, optimizer and engine step: the suite
measures what a user's run executes, not a hand-tuned copy. PyTorch twins of the same models
are in torch_models.py. Image models read random images from an .npz file (the engine's
`npz:` path, decoded into memory like any small dataset); the sequence models read real text
(`stdlib_chars`, cut into windows by `task.context`).

FLOPs: `forward_flops` counts 2 x the multiply-adds of every matrix product and convolution of
one example's forward pass (attention's two products at full, unmasked size; elementwise work
left out). A training step is 3 x forward (the backward pass forms the gradients of the
weights and of the inputs, each costing one forward) less the input gradient of the first
layer, which nothing needs; the suite cross-checks it against XLA's cost analysis of the
compiled step, which also counts the elementwise work.
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np

from jaxdl.config import base_config

NPZ_EXAMPLES = 512  # Random training images per file: two or more batches of every model.


@dataclasses.dataclass(frozen=True)
class Reference:
    name: str
    description: str
    batch_size: int
    forward_flops: int  # Per example, see the module docstring.
    first_layer_flops: int  # Per example: its input gradient is never formed.
    make_config: Callable[[Path], ml_collections.ConfigDict]  # From the scratch data folder.

    @property
    def train_flops_per_step(self) -> int:
        return (3 * self.forward_flops - self.first_layer_flops) * self.batch_size


def _conv(side: int, c_in: int, c_out: int, kernel: int) -> int:
    """FLOPs of a convolution whose output is side x side."""
    return 2 * side * side * c_out * kernel * kernel * c_in


def _resnet18_cifar_flops() -> int:
    flops = _conv(32, 3, 64, 3)
    c_in, side = 64, 32
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage and not block else 1
            side //= stride
            flops += _conv(side, c_in, width, 3) + _conv(side, width, width, 3)
            if stride != 1 or c_in != width:
                flops += _conv(side, c_in, width, 1)  # Projection shortcut.
            c_in = width
    return flops + 2 * 512 * 10


def _gpt_flops(layers: int = 6, width: int = 256, mlp: int = 1024, seq: int = 128) -> int:
    per_token = layers * (2 * 4 * width * width + 2 * 2 * width * mlp + 2 * 2 * seq * width)
    return seq * (per_token + 2 * width * 256)


def _vit_flops(
    side: int = 32, patch: int = 4, width: int = 384, layers: int = 12, mlp: int = 1536
) -> int:
    tokens = (side // patch) ** 2 + 1  # The patches and the class token.
    per_layer = tokens * (2 * 4 * width * width + 2 * 2 * width * mlp) + 2 * 2 * tokens**2 * width
    return _vit_patch_flops(side, patch, width) + layers * per_layer + 2 * width * 10


def _vit_patch_flops(side: int = 32, patch: int = 4, width: int = 384) -> int:
    return 2 * (side // patch) ** 2 * patch * patch * 3 * width


def _lstm_flops(embed: int = 128, hidden: int = 256, seq: int = 64) -> int:
    return seq * (2 * 4 * hidden * (embed + hidden) + 2 * hidden * 256)


def write_image_npz(path: Path, shape: tuple[int, ...], classes: int = 10) -> None:
    """Random uint8 images and labels in the layout `data.name='npz:PATH'` reads."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", NPZ_EXAMPLES), ("val", 64), ("test", 64)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (count, *shape), np.uint8)
        arrays[f"y_{split}"] = rng.integers(0, classes, count).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _base(batch_size: int, optimizer: str, learning_rate: float) -> ml_collections.ConfigDict:
    config = base_config()
    config.data.batch_size = batch_size
    config.optimizer.name = optimizer
    config.optimizer.learning_rate = learning_rate
    config.optimizer.decay_all_params = True  # As PyTorch's optimizers do.
    config.schedule.name = "constant"
    config.train.progress_bar = False
    return config


def _images(scratch: Path, stem: str, shape: tuple[int, ...]) -> str:
    path = scratch / f"{stem}.npz"
    if not path.exists():
        write_image_npz(path, shape)
    return f"npz:{path}"


def _mlp(scratch: Path) -> ml_collections.ConfigDict:
    config = _base(256, "adam", 1e-3)
    config.data.name = _images(scratch, "mnist_flat", (784,))
    config.model.name = "mlp"
    config.model.hidden_sizes = (512, 512)
    config.model.activation = "relu"
    config.model.dropout_rate = 0.0
    config.model.batch_norm = False
    return config


def _cnn(scratch: Path) -> ml_collections.ConfigDict:
    config = _base(128, "adam", 1e-3)
    config.data.name = _images(scratch, "mnist", (28, 28, 1))
    config.model.name = "cnn"
    config.model.conv_features = ((32, 64),)  # conv32 - conv64 - max-pool 2.
    config.model.kernel_size = 3
    config.model.padding = "VALID"
    config.model.pooling = "max"
    config.model.global_pool = "flatten"
    config.model.dense_sizes = (128,)
    config.model.activation = "relu"
    config.model.batch_norm = False
    config.model.dropout_rate = 0.0
    return config


def _resnet18(scratch: Path) -> ml_collections.ConfigDict:
    config = _base(64, "momentum", 0.1)
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.data.name = _images(scratch, "cifar", (32, 32, 3))
    config.model.name = "resnet"
    config.model.depth = 18
    config.model.stem = "cifar"
    return config


def _vit(scratch: Path) -> ml_collections.ConfigDict:
    config = _base(64, "adamw", 1e-3)
    config.optimizer.weight_decay = 0.05
    config.data.name = _images(scratch, "cifar", (32, 32, 3))
    config.model.name = "vit"
    config.model.variant = "S"
    config.model.patch_size = 4
    config.model.pool = "cls"
    config.model.mlp = "gelu"  # tanh approximation.
    config.model.dropout_rate = 0.0
    return config


def _text(batch_records: int, context: int) -> ml_collections.ConfigDict:
    config = _base(batch_records, "adam", 1e-3)
    config.data.name = "stdlib_chars"
    config.task.name = "language_model"
    # Each 256-byte record is cut into 256 / context windows: batch_records records give
    # 256 / context * batch_records sequences of `context` tokens.
    config.task.context = context
    return config


def _gpt(scratch: Path) -> ml_collections.ConfigDict:
    del scratch
    config = _text(16, 128)  # 32 sequences of 128.
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.weight_decay = 0.1
    config.model.name = "gpt"
    config.model.hidden_size = 256
    config.model.num_layers = 6
    config.model.num_heads = 8
    config.model.mlp_dim = 1024
    config.model.max_length = 128
    config.model.positions = "learned"
    config.model.norm = "layernorm"
    config.model.mlp = "gelu"  # tanh approximation.
    config.model.tie_embeddings = False
    config.model.dropout_rate = 0.0
    return config


def _lstm(scratch: Path) -> ml_collections.ConfigDict:
    del scratch
    config = _text(8, 64)  # 32 sequences of 64.
    config.model.name = "rnn"
    config.model.cell = "lstm"
    config.model.hidden_size = 256
    config.model.num_layers = 1
    config.model.embed_dim = 128
    config.model.head = "per_step"
    config.model.dropout_rate = 0.0
    return config


REFERENCES: dict[str, Reference] = {
    ref.name: ref
    for ref in (
        Reference(
            "mlp", "MLP 784-512-512-10, batch 256, Adam", 256, 1_337_344, 2 * 784 * 512, _mlp
        ),
        Reference(
            "cnn",
            "CNN conv32-conv64 (3x3 VALID) - max-pool - dense 128 - 10 on 28x28x1, batch 128, Adam",
            128,
            _conv(26, 1, 32, 3) + _conv(24, 32, 64, 3) + 2 * 9216 * 128 + 2 * 128 * 10,
            _conv(26, 1, 32, 3),
            _cnn,
        ),
        Reference(
            "resnet18",
            "ResNet-18 (CIFAR stem) on 32x32x3, batch 64, SGD momentum 0.9, weight decay 5e-4",
            64,
            _resnet18_cifar_flops(),
            _conv(32, 3, 64, 3),
            _resnet18,
        ),
        Reference(
            "vit",
            "ViT-S/4 (width 384, 12 layers, 6 heads, class token) on 32x32x3, batch 64, AdamW",
            64,
            _vit_flops(),
            _vit_patch_flops(),
            _vit,
        ),
        Reference(
            "gpt",
            "GPT pre-LN, 6 layers, width 256, 8 heads, sequence 128, vocabulary 256, batch 32, AdamW",
            32,
            _gpt_flops(),
            0,  # An embedding lookup.
            _gpt,
        ),
        Reference(
            "lstm",
            "char LSTM embedding 128, hidden 256, sequence 64, batch 32, Adam",
            32,
            _lstm_flops(),
            0,  # Its input is a trained embedding, so the input gradient is needed.
            _lstm,
        ),
    )
}
