"""`jaxdl export-hf --workdir W --out DIR`: a trained `bert` run as a Hugging Face checkpoint.

DIR gets config.json, model.safetensors (written with safetensors.numpy) and the tokenizer
files, which `transformers` loads as BertModel, BertForSequenceClassification or
BertForMaskedLM. Parameter names come from the table the import reads (hf_names.py).
The tokenizer is the source's when the run started from `hf:DIR` (init_from keeps a copy in the
workdir's hf_source/); a run on a byte-level dataset (ids 0-255, 0 pads) gets a byte-level
tokenizer.json that gives the same ids. DIR must not exist, or be empty: nothing is overwritten.
"""

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import safetensors.numpy
import tokenizers

from jaxdl import hf_names, pretrained
from jaxdl.engine.evaluation import restore_checkpoint
from jaxdl.engine.init_from_hf import SOURCE_DIR
from jaxdl.engine.workdir import check_new_dir
from jaxdl.errors import UserInputError
from jaxdl.models.bert import Bert
from jaxdl.optim import param_paths

BYTE_VOCAB = 256
HIDDEN_ACT = {"gelu_exact": "gelu", "gelu": "gelu_pytorch_tanh"}  # Inverse of ACTIVATIONS.
ARCHITECTURES = {"classify": "BertForSequenceClassification", "mlm": "BertForMaskedLM"}


def export_hf(workdir: Path, out: Path, checkpoint: str = "best") -> int:
    """Write checkpoint `checkpoint` ('best', 'latest' or a step) of the run in `workdir` to
    `out` as a Hugging Face checkpoint; returns the step written."""
    check_new_dir(out, "export-hf never overwrites files")
    plan, step, state = restore_checkpoint(workdir, checkpoint)
    model = getattr(plan.task, "model", None)
    if not isinstance(model, Bert):
        raise UserInputError(
            f"{workdir} holds a model.name={plan.config.model.get('name')!r} run; export-hf "
            "writes BERT runs (model.name='bert') only."
        )
    if model.mlp not in HIDDEN_ACT:
        raise UserInputError(
            f"{workdir}: model.mlp={model.mlp!r} has no Hugging Face BERT equivalent; export-hf "
            f"takes {', '.join(HIDDEN_ACT)}."
        )
    source = workdir / SOURCE_DIR
    write_tokenizer = _tokenizer_writer(workdir, source, plan.dataset)
    paths, leaves, _ = param_paths(jax.device_get(plan.task.params(state)))
    params = {
        path: np.asarray(getattr(leaf, "value", leaf))
        for path, leaf in zip(paths, leaves, strict=True)
    }
    weights = {
        hf_name: np.ascontiguousarray(hf_names.to_hf(kind, params[path]), np.float32)
        for hf_name, path, kind in hf_names.name_table(model.num_layers)
        if path in params
    }
    out.mkdir(parents=True, exist_ok=True)
    # transformers checks the "format" entry of the metadata.
    safetensors.numpy.save_file(weights, out / pretrained.WEIGHTS_FILE, metadata={"format": "pt"})
    config = _config(model, source / pretrained.CONFIG_FILE)
    (out / pretrained.CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    write_tokenizer(out)
    return step


def _config(model: Bert, source_config: Path) -> dict[str, Any]:
    """config.json: the source's (when the run started from one) with this model's values."""
    config = json.loads(source_config.read_text()) if source_config.is_file() else {}
    config.update(
        {
            "architectures": [ARCHITECTURES[model.head]],
            "model_type": "bert",
            "vocab_size": model.vocab_size,
            "hidden_size": model.hidden_size,
            "num_hidden_layers": model.num_layers,
            "num_attention_heads": model.num_heads,
            "intermediate_size": model.mlp_dim,
            "hidden_act": HIDDEN_ACT[model.mlp],
            "max_position_embeddings": model.max_length,
            "type_vocab_size": model.type_vocab_size,
            "layer_norm_eps": model.norm_epsilon,
            "hidden_dropout_prob": model.dropout_rate,
            "attention_probs_dropout_prob": model.dropout_rate,
            "position_embedding_type": "absolute",
            "tie_word_embeddings": True,
        }
    )
    config.setdefault("pad_token_id", 0)
    config.setdefault("initializer_range", 0.02)
    if model.head == "classify":
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_classes)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(model.num_classes)}
    return config


def _tokenizer_writer(workdir: Path, source: Path, dataset: Any) -> Any:
    """A function that writes the run's tokenizer files into a directory; checked up front, so
    that a run without a known tokenizer fails before anything is written."""
    if (source / pretrained.TOKENIZER_FILE).is_file():

        def copy(out: Path) -> None:
            for name in pretrained.TOKENIZER_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, out / name)

        return copy
    if getattr(dataset, "vocab_size", 0) == BYTE_VOCAB:
        return write_byte_tokenizer
    raise UserInputError(
        f"{workdir}: no tokenizer for dataset {dataset.name!r} (vocab_size "
        f"{getattr(dataset, 'vocab_size', 0)}); export-hf writes the tokenizer of runs started "
        "from init_from=hf:DIR and a byte-level one for datasets of byte ids."
    )


def bytes_to_unicode() -> list[str]:
    """GPT-2's printable character for each byte, the alphabet of the ByteLevel pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def byte_tokenizer() -> tokenizers.Tokenizer:
    """Text -> its UTF-8 bytes as ids 0-255 (BPE without merges over the byte alphabet)."""
    chars = bytes_to_unicode()
    model = tokenizers.models.BPE(vocab={char: i for i, char in enumerate(chars)}, merges=[])
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=False
    )
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    return tokenizer


def write_byte_tokenizer(out: Path) -> None:
    byte_tokenizer().save(str(out / pretrained.TOKENIZER_FILE))
    pad = bytes_to_unicode()[0]  # Byte 0 (NUL) pads the byte-level datasets.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": pad}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
