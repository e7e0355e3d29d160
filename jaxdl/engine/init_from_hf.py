"""`config.init_from=hf:DIR`: a `bert` run starts from a Hugging Face checkpoint directory.

The checkpoint is read by jaxdl/pretrained.py (safetensors only). Its encoder must fit the
run's model exactly (sizes, activation, norm epsilon, and the dataset's vocabulary, since token
ids mean nothing under another vocabulary); the error names the overrides that make it fit. The
heads the checkpoint has (pooler, masked-LM head) are copied where the run's head has them, and
anything else, such as a new classifier, keeps its fresh initialisation. The source's
config.json and tokenizer files are copied into the run's `hf_source/`, so that
`jaxdl export-hf` writes the same tokenizer even after the source directory is gone.
"""

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from jaxdl import pretrained
from jaxdl.errors import UserInputError

HF_PREFIX = "hf:"
SOURCE_DIR = "hf_source"
# Bert's fields that the checkpoint fixes (pretrained.model_fields reads them from config.json).
FIXED_FIELDS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "mlp_dim",
    "max_length",
    "type_vocab_size",
    "norm_epsilon",
    "mlp",
)


def is_hf(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(HF_PREFIX)


def directory(spec: str) -> Path:
    return Path(spec.removeprefix(HF_PREFIX)).expanduser()


def _fail(spec: str, message: str) -> UserInputError:
    return UserInputError(f"config.init_from={spec!r}: {message}")


def checked_arrays(spec: str, plan: Any) -> dict[str, np.ndarray]:
    """The checkpoint's arrays by state path ('params/bert/...'), once the run's model fits."""
    name = plan.config.model.get("name")
    if name != "bert":
        raise _fail(
            spec,
            f"a Hugging Face checkpoint starts a BERT; set model.name='bert' (it is {name!r}).",
        )
    if not directory(spec).is_dir():
        raise _fail(
            spec,
            f"{directory(spec)} is not a directory; write it as 'hf:DIR', the directory "
            "a Hugging Face model was saved to (config.json, model.safetensors).",
        )
    try:
        fields, arrays = pretrained.checkpoint_params(directory(spec))
    except UserInputError as error:
        raise _fail(spec, str(error)) from error
    model = getattr(plan.task, "model", None)
    if model is not None:
        _check_fits(spec, model, fields)
    return {f"params/{path}": value for path, value in arrays.items()}


def _check_fits(spec: str, model: Any, fields: dict[str, Any]) -> None:
    if getattr(model, "vocab_size", None) != fields["vocab_size"]:
        raise _fail(
            spec,
            f"the dataset has {getattr(model, 'vocab_size', None)} token ids but the checkpoint's "
            f"vocabulary {fields['vocab_size']}; train on data tokenised with its tokenizer.json.",
        )
    overrides = [
        f"--config.model.{field}={fields[field]!r}"
        for field in FIXED_FIELDS
        if getattr(model, field, None) != fields[field]
    ]
    if overrides:
        raise _fail(
            spec,
            f"the model does not fit the checkpoint's config.json; set {' '.join(overrides)}.",
        )


def keep_source_files(spec: str, workdir: Path) -> None:
    """Copy config.json and the tokenizer files into `<workdir>/hf_source/` (for export-hf)."""
    target = workdir / SOURCE_DIR
    target.mkdir(exist_ok=True)
    for name in (pretrained.CONFIG_FILE, *pretrained.TOKENIZER_FILES):
        path = directory(spec) / name
        if path.is_file():
            shutil.copyfile(path, target / name)
