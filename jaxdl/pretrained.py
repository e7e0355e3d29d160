"""Hugging Face BERT-family checkpoints from a local directory, read without torch or pickle.

    from jaxdl.pretrained import load_hf_encoder
    encoder = load_hf_encoder("path/to/dir")  # config.json, model.safetensors, tokenizer.json
    batch = encoder.tokenize(["a sentence", "another"], max_length=128)
    hidden = encoder(batch)  # (batch, length, hidden) float32 last hidden states

The weights are read from safetensors only: a `pytorch_model.bin` is a pickle, which can run
code when loaded, so it is refused. Checkpoint names (with or without the 'bert.' prefix) map
onto the parameters of `jaxdl.models.bert.Bert` through one table (hf_names.py), which
`jaxdl export-hf` (export_hf.py) reads backwards. Tokens come from the `tokenizers` library
reading the checkpoint's tokenizer.json, so the ids are the Hugging Face tokenizer's.
"""

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
import tokenizers
from flax import traverse_util

from jaxdl.errors import UserInputError, one_line
from jaxdl.hf_names import BASE_PREFIX, hf_shape, name_table, to_flax
from jaxdl.models.bert import BertEncoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"  # Sharded checkpoints list their files here.
TOKENIZER_FILE = "tokenizer.json"
# Everything a tokenizer may need besides tokenizer.json, copied along by init_from and export.
TOKENIZER_FILES = (TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
PICKLE_FILES = (
    "pytorch_model.bin",
    "model.bin",
    "model.pt",
    "model.ckpt",
    "pytorch_model.bin.index.json",
)
MODEL_TYPES = ("bert",)
# config.json's hidden_act -> the MLP kind of transformer.py (BERT's "gelu" is the erf form).
ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def _need(directory: Path, name: str, fix: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise UserInputError(f"{path} is missing; {fix}")
    return path


def read_config(directory: Path) -> dict[str, Any]:
    """config.json, checked; UserInputError naming the field and the fix."""
    if not directory.is_dir():
        what = "is a file" if directory.exists() else "does not exist"
        raise UserInputError(
            f"{directory} {what}; give the directory a Hugging Face model was saved to "
            "(config.json, model.safetensors, tokenizer.json)."
        )
    path = _need(directory, CONFIG_FILE, "save the model with save_pretrained(), which writes it.")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} cannot be read as JSON ({one_line(error)}).") from error
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in MODEL_TYPES:
        raise UserInputError(
            f"{path}: model_type={model_type!r} is not supported; jaxdl imports "
            f"{', '.join(MODEL_TYPES)} checkpoints."
        )
    checks = {
        "hidden_act": (config.get("hidden_act", "gelu") in ACTIVATIONS, ", ".join(ACTIVATIONS)),
        "position_embedding_type": (
            config.get("position_embedding_type", "absolute") == "absolute",
            "'absolute'",
        ),
        "is_decoder": (not config.get("is_decoder", False), "false"),
    }
    for field, (ok, allowed) in checks.items():
        if not ok:
            raise UserInputError(
                f"{path}: {field}={config.get(field)!r} is not supported; jaxdl's BERT takes {allowed}."
            )
    for field in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
    ):
        value = config.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"{path}: {field}={value!r} must be a positive integer.")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UserInputError(
            f"{path}: hidden_size={config['hidden_size']} is not divisible by "
            f"num_attention_heads={config['num_attention_heads']}."
        )
    return config


def model_fields(config: dict[str, Any]) -> dict[str, Any]:
    """BertEncoder's fields for a checked config.json."""
    return {
        "vocab_size": config["vocab_size"],
        "hidden_size": config["hidden_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "mlp_dim": config["intermediate_size"],
        "max_length": config.get("max_position_embeddings", 512),
        "type_vocab_size": config.get("type_vocab_size", 2),
        "dropout_rate": config.get("hidden_dropout_prob", 0.1),
        "norm_epsilon": config.get("layer_norm_eps", 1e-12),
        "mlp": ACTIVATIONS[config.get("hidden_act", "gelu")],
    }


def read_weights(directory: Path) -> dict[str, np.ndarray]:
    """The checkpoint's arrays by name, from model.safetensors (or its shards), never a pickle."""
    index = directory / WEIGHTS_INDEX
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserInputError(f"{index} cannot be read ({one_line(error)}).") from error
    else:
        if not (directory / WEIGHTS_FILE).is_file():
            pickles = [name for name in PICKLE_FILES if (directory / name).is_file()]
            found = (
                f" It holds only {', '.join(pickles)}: a pickle, which jaxdl never loads (it can run code)."
                if pickles
                else ""
            )
            raise UserInputError(
                f"{directory / WEIGHTS_FILE} is missing; jaxdl reads weights from safetensors only."
                f"{found} Save the model with save_pretrained(dir, safe_serialization=True) "
                "(the default in transformers) to write model.safetensors."
            )
        files = [WEIGHTS_FILE]
    arrays = {}
    for name in files:
        path = _need(directory, name, f"it is listed in {WEIGHTS_INDEX}; copy it there.")
        try:
            arrays.update(safetensors.numpy.load_file(path))
        except Exception as error:  # safetensors raises its own error types for bad files.
            raise UserInputError(
                f"{path} is not a readable safetensors file ({one_line(error)[:200]}); save it again."
            ) from error
    return arrays


def checkpoint_params(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(BertEncoder's fields, arrays by their path in `Bert`'s params) of a checkpoint directory.

    The encoder's arrays must all be there, with the shapes config.json implies; the heads'
    are included when present.
    """
    config = read_config(directory)
    fields = model_fields(config)
    weights = read_weights(directory)
    # Old checkpoints name LayerNorm parameters gamma and beta.
    weights = {
        name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        ): value
        for name, value in weights.items()
    }
    shapes = _encoder_shapes(fields)
    arrays = {}
    for hf_name, path, kind in name_table(fields["num_layers"]):
        short = hf_name.removeprefix(BASE_PREFIX)
        value = weights.get(hf_name, weights.get(short))
        if value is None:
            if path in shapes:
                raise UserInputError(
                    f"{directory / WEIGHTS_FILE} lacks {hf_name} (or {short}); it is not a "
                    f"complete BERT checkpoint for config.json ({fields['num_layers']} layers)."
                )
            continue
        expected = shapes.get(path)
        if expected is not None and value.shape != hf_shape(kind, expected):
            raise UserInputError(
                f"{directory / WEIGHTS_FILE}: {hf_name} has shape {tuple(value.shape)}, not "
                f"{hf_shape(kind, expected)} as config.json says (vocab_size="
                f"{fields['vocab_size']}, hidden_size={fields['hidden_size']}, intermediate_size="
                f"{fields['mlp_dim']}, max_position_embeddings={fields['max_length']}); fix "
                "config.json or the weights."
            )
        arrays[path] = to_flax(kind, np.asarray(value, np.float32), fields["num_heads"])
    return fields, arrays


@functools.lru_cache(maxsize=8)
def _encoder_shapes_cached(items: tuple) -> dict[str, tuple[int, ...]]:
    model = BertEncoder(**dict(items))
    ids = jnp.zeros((1, 1), jnp.int32)
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), ids, train=False))
    flat = traverse_util.flatten_dict(abstract["params"], sep="/")  # Boxed leaves: .value
    return {
        f"bert/{path}": tuple(getattr(leaf, "value", leaf).shape) for path, leaf in flat.items()
    }


def _encoder_shapes(fields: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Path -> shape of every encoder parameter, as `Bert` names them."""
    return _encoder_shapes_cached(tuple(sorted(fields.items())))


@dataclasses.dataclass
class HFEncoder:
    """A Hugging Face BERT encoder as a Linen module, its variables and its tokenizer."""

    model: BertEncoder
    variables: dict[str, Any]
    tokenizer: tokenizers.Tokenizer
    config: dict[str, Any]  # config.json
    directory: Path

    @property
    def pad_token(self) -> str:
        token = _tokenizer_config(self.directory).get("pad_token", "[PAD]")
        return token.get("content", "[PAD]") if isinstance(token, dict) else str(token)

    def tokenize(
        self, texts: Sequence[str], max_length: int = 512, *, pad_to_max_length: bool = False
    ) -> dict[str, np.ndarray]:
        """int32 input_ids, attention_mask and token_type_ids (B, L): each text truncated to
        `max_length` tokens (special tokens included), then padded to the longest (or to
        `max_length`), as the Hugging Face tokenizer with padding and truncation does."""
        if isinstance(texts, str):
            texts = [texts]
        if max_length > self.model.max_length:
            raise UserInputError(
                f"max_length={max_length} is longer than the model's {self.model.max_length} "
                f"positions (max_position_embeddings in {self.directory / CONFIG_FILE})."
            )
        pad_id = self.tokenizer.token_to_id(self.pad_token)
        if pad_id is None:
            raise UserInputError(
                f"{self.directory / TOKENIZER_FILE} has no pad token {self.pad_token!r}; set "
                "pad_token in tokenizer_config.json to a token of its vocabulary."
            )
        self.tokenizer.enable_truncation(max_length)
        length = max_length if pad_to_max_length else None
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.pad_token, length=length)
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            key: np.array([getattr(e, attribute) for e in encodings], np.int32).reshape(
                len(encodings), -1
            )
            for key, attribute in (
                ("input_ids", "ids"),
                ("attention_mask", "attention_mask"),
                ("token_type_ids", "type_ids"),
            )
        }

    def __call__(self, batch: dict[str, Any]) -> jax.Array:
        """Last hidden states (B, L, hidden), float32; attention_mask and token_type_ids are
        optional (all ones and all zeros)."""
        return _apply(
            self.model,
            self.variables,
            batch.get("input_ids"),
            batch.get("attention_mask"),
            batch.get("token_type_ids"),
        )


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: BertEncoder, variables: Any, ids: Any, mask: Any, types: Any) -> jax.Array:
    hidden = model.apply(variables, ids, attention_mask=mask, token_types=types, train=False)
    return hidden.astype(jnp.float32)


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    try:
        config = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} cannot be read as JSON ({one_line(error)}).") from error
    return config if isinstance(config, dict) else {}


def read_tokenizer(directory: Path) -> tokenizers.Tokenizer:
    path = _need(
        directory,
        TOKENIZER_FILE,
        "save the tokenizer with a fast tokenizer's save_pretrained() "
        "(AutoTokenizer.from_pretrained(name).save_pretrained(dir)), which writes it.",
    )
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises plain Exceptions for malformed files.
        raise UserInputError(
            f"{path} is not a readable tokenizer.json ({one_line(error)[:200]})."
        ) from error


def load_hf_encoder(path: str | Path) -> HFEncoder:
    """The encoder saved in directory `path` (config.json, model.safetensors, tokenizer.json)."""
    directory = Path(path).expanduser()
    fields, arrays = checkpoint_params(directory)
    tokenizer = read_tokenizer(directory)
    encoder = {
        name.removeprefix("bert/"): value
        for name, value in arrays.items()
        if name.startswith("bert/")
    }
    params = traverse_util.unflatten_dict(
        {tuple(k.split("/")): jnp.asarray(v) for k, v in encoder.items()}
    )
    return HFEncoder(
        model=BertEncoder(**fields),
        variables={"params": params},
        tokenizer=tokenizer,
        config=read_config(directory),
        directory=directory,
    )
