"""Hugging Face BERT parameter names <-> the parameters of `jaxdl.models.bert.Bert`.

One table serves both directions: the import (pretrained.py) reads it forwards and
`jaxdl export-hf` (export_hf.py) backwards. torch's Linear stores (out, in) weights; Flax
kernels are (in, out), and the attention projections split their outputs (queries, keys,
values) or inputs (the output projection) into heads.
"""

import numpy as np

BASE_PREFIX = "bert."  # Task models (BertForMaskedLM, ...) nest the encoder under this name.


def name_table(num_layers: int) -> list[tuple[str, str, str]]:
    """(checkpoint name, path in Bert's params, conversion) for every mapped array.

    Names starting with 'bert.' take the prefix only in task models; the others ('classifier',
    'cls.predictions') never have it. Conversions: 'copy'; 'dense' (torch Linear (out, in) ->
    kernel (in, out)); 'qkv' and 'qkv_bias' (outputs split into heads); 'attn_out' (inputs split).
    """
    table = [
        ("bert.embeddings.word_embeddings.weight", "bert/word_embeddings/embedding", "copy"),
        (
            "bert.embeddings.position_embeddings.weight",
            "bert/position_embeddings/embedding",
            "copy",
        ),
        (
            "bert.embeddings.token_type_embeddings.weight",
            "bert/token_type_embeddings/embedding",
            "copy",
        ),
        ("bert.embeddings.LayerNorm.weight", "bert/embeddings_norm/scale", "copy"),
        ("bert.embeddings.LayerNorm.bias", "bert/embeddings_norm/bias", "copy"),
    ]
    for index in range(num_layers):
        hf, ours = f"bert.encoder.layer.{index}.", f"bert/encoder/block_{index}/"
        attention = ours + "MultiHeadAttention_0/"
        for number, name in enumerate(("query", "key", "value")):
            table.append(
                (
                    f"{hf}attention.self.{name}.weight",
                    f"{attention}DenseGeneral_{number}/kernel",
                    "qkv",
                )
            )
            table.append(
                (
                    f"{hf}attention.self.{name}.bias",
                    f"{attention}DenseGeneral_{number}/bias",
                    "qkv_bias",
                )
            )
        table += [
            (f"{hf}attention.output.dense.weight", f"{attention}DenseGeneral_3/kernel", "attn_out"),
            (f"{hf}attention.output.dense.bias", f"{attention}DenseGeneral_3/bias", "copy"),
            # Post-norm: LayerNorm_0 follows attention, LayerNorm_1 the MLP.
            (f"{hf}attention.output.LayerNorm.weight", f"{ours}LayerNorm_0/scale", "copy"),
            (f"{hf}attention.output.LayerNorm.bias", f"{ours}LayerNorm_0/bias", "copy"),
            (f"{hf}intermediate.dense.weight", f"{ours}MlpBlock_0/Dense_0/kernel", "dense"),
            (f"{hf}intermediate.dense.bias", f"{ours}MlpBlock_0/Dense_0/bias", "copy"),
            (f"{hf}output.dense.weight", f"{ours}MlpBlock_0/Dense_1/kernel", "dense"),
            (f"{hf}output.dense.bias", f"{ours}MlpBlock_0/Dense_1/bias", "copy"),
            (f"{hf}output.LayerNorm.weight", f"{ours}LayerNorm_1/scale", "copy"),
            (f"{hf}output.LayerNorm.bias", f"{ours}LayerNorm_1/bias", "copy"),
        ]
    return table + HEAD_TABLE


# The heads: BertModel's pooler, BertForSequenceClassification's classifier and
# BertForMaskedLM's prediction head (its decoder weight is the word embeddings).
HEAD_TABLE = [
    ("bert.pooler.dense.weight", "pooler/kernel", "dense"),
    ("bert.pooler.dense.bias", "pooler/bias", "copy"),
    ("classifier.weight", "classifier/kernel", "dense"),
    ("classifier.bias", "classifier/bias", "copy"),
    ("cls.predictions.transform.dense.weight", "mlm_transform/kernel", "dense"),
    ("cls.predictions.transform.dense.bias", "mlm_transform/bias", "copy"),
    ("cls.predictions.transform.LayerNorm.weight", "mlm_norm/scale", "copy"),
    ("cls.predictions.transform.LayerNorm.bias", "mlm_norm/bias", "copy"),
    ("cls.predictions.bias", "mlm_bias", "copy"),
]


def to_flax(kind: str, array: np.ndarray, num_heads: int) -> np.ndarray:
    """A checkpoint array in the layout of the parameter it maps to."""
    if kind == "dense":
        return array.T
    if kind == "qkv":  # (heads * head_dim, hidden): output index h * head_dim + d.
        return array.T.reshape(array.shape[1], num_heads, -1)
    if kind == "qkv_bias":
        return array.reshape(num_heads, -1)
    if kind == "attn_out":  # (hidden, heads * head_dim) -> (heads, head_dim, hidden)
        return array.T.reshape(num_heads, -1, array.shape[0])
    return array


def to_hf(kind: str, array: np.ndarray) -> np.ndarray:
    """The inverse of `to_flax`."""
    if kind == "dense":
        return array.T
    if kind == "qkv":
        return array.reshape(array.shape[0], -1).T
    if kind == "qkv_bias":
        return array.reshape(-1)
    if kind == "attn_out":
        return array.reshape(-1, array.shape[-1]).T
    return array


def hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The checkpoint's shape of a parameter of shape `shape` (`to_hf` without an array)."""
    if kind == "dense":
        return shape[::-1]
    if kind == "qkv":  # (hidden, heads, head_dim)
        return (shape[1] * shape[2], shape[0])
    if kind == "qkv_bias":
        return (shape[0] * shape[1],)
    if kind == "attn_out":  # (heads, head_dim, hidden)
        return (shape[2], shape[0] * shape[1])
    return shape
