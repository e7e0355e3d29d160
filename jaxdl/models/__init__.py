"""Model families as pure Flax Linen modules, built by name from the `model` sub-config."""

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import flax.linen as nn
from ml_collections import ConfigDict

from jaxdl.errors import UserInputError, close_matches, unknown_name_error
from jaxdl.models.bert import Bert
from jaxdl.models.cnn import CNN, LeNet5
from jaxdl.models.gan import GAN
from jaxdl.models.gnn import GNN
from jaxdl.models.gpt import DecoderLM
from jaxdl.models.layers import resolve_dtype
from jaxdl.models.mlp import MLP
from jaxdl.models.resnet import ResNet
from jaxdl.models.rnn import RNN
from jaxdl.models.seq2seq import Seq2SeqTransformer
from jaxdl.models.unet import UNet
from jaxdl.models.vae import VAE
from jaxdl.models.vit import VisionTransformer

_FAMILIES: Mapping[str, type[nn.Module]] = MappingProxyType(
    {
        "mlp": MLP,
        "cnn": CNN,
        "lenet5": LeNet5,
        "resnet": ResNet,
        "vit": VisionTransformer,
        "rnn": RNN,
        "gpt": DecoderLM,
        "bert": Bert,
        "seq2seq": Seq2SeqTransformer,
        "vae": VAE,
        "gan": GAN,
        "unet": UNet,
        "gnn": GNN,
    }
)

MODEL_NAMES: tuple[str, ...] = tuple(_FAMILIES)

# Set by build_model's caller (from the dataset) or by Flax itself, never by the model config.
_NOT_CONFIGURABLE = (
    "num_classes",
    "vocab_size",
    "batch_axis_name",
    "image_shape",
    "spectral_norm",  # The GAN task sets it from task.regularizer.
    "parent",
    "name",
)

__all__ = [
    "CNN",
    "GAN",
    "GNN",
    "MLP",
    "MODEL_NAMES",
    "RNN",
    "VAE",
    "Bert",
    "DecoderLM",
    "LeNet5",
    "ResNet",
    "Seq2SeqTransformer",
    "UNet",
    "VisionTransformer",
    "build_model",
    "model_fields",
]


def model_fields(name: str) -> tuple[str, ...]:
    """The config fields that model family `name` accepts besides `name`."""
    if name not in _FAMILIES:
        raise unknown_name_error("model", name, MODEL_NAMES)
    fields = dataclasses.fields(_FAMILIES[name])
    return tuple(f.name for f in fields if f.init and f.name not in _NOT_CONFIGURABLE)


def build_model(
    config: ConfigDict, *, num_classes: int, vocab_size: int = 0, batch_axis_name: Any = None
) -> nn.Module:
    """Build the module named by `config.name`, passing every other field of `config` to it.

    `vocab_size` (the dataset's token vocabulary, 0 for real-valued inputs) goes to the
    families that embed tokens, i.e. those with a `vocab_size` field.

    `batch_axis_name` (the mesh's batch axes) is given in shard_map mode only: the model then
    synchronises batch norm and draws dropout masks as a jit step over the whole batch would.
    """
    fields = config.to_dict() if isinstance(config, ConfigDict) else dict(config)
    name = fields.pop("name", None)
    if name is None:
        raise UserInputError(f"model.name is not set; set it to one of: {', '.join(MODEL_NAMES)}.")
    valid = model_fields(name)
    for taken in ("num_classes", "vocab_size"):
        if taken in fields:
            raise UserInputError(
                f"model.{taken} is taken from the dataset; remove it from the model config."
            )
    for field in fields:
        if field not in valid:
            raise UserInputError(
                f"unknown field model.{field} for model {name!r}.{close_matches(field, valid)} "
                f"Valid fields: {', '.join(valid)}. Remove or rename it."
            )
    kwargs = {field: _frozen(value) for field, value in fields.items()}
    if "dtype" in kwargs:
        kwargs["dtype"] = resolve_dtype(kwargs["dtype"])
    declared = {f.name for f in dataclasses.fields(_FAMILIES[name])}
    if batch_axis_name is not None and "batch_axis_name" in declared:
        kwargs["batch_axis_name"] = batch_axis_name
    if "vocab_size" in declared:
        kwargs["vocab_size"] = vocab_size
    return _FAMILIES[name](num_classes=num_classes, **kwargs)


def _frozen(value: Any) -> Any:
    """Lists from configs become tuples so modules stay hashable (jit static args, comparisons)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value
