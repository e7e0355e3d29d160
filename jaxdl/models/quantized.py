"""Quantized versions of any model, through Qwix (post-training and quantization-aware).

Qwix rewrites a Flax module's matrix products and convolutions (`dot_general`, `einsum`,
`conv_general_dilated`) while it runs; the module's code stays as it is. Three modes:

- 'static': weights and activations in the low-precision type, each activation with one scale
  fixed beforehand from a calibration pass over training batches (Qwix's `quant_stats`);
- 'dynamic': the same, but each activation's scale is taken from the tensor itself at run time;
- 'weight': weights only, stored low-precision with per-output-channel scales and turned back
  into float32 inside the inference function, so every layer (convolutions, embeddings, RNN
  cells) shrinks on disk while the arithmetic stays float32. Qwix's PTQ convolution requires the
  activations quantized too, hence a mode of our own built on Qwix's `quantize`/`dequantize`.

Weights always get one scale per output channel (the last axis of a kernel). On the CPU our
convolutions run as patches @ kernel (patch_conv.py); the providers below hand that function to
Qwix as the convolution it is, so convolutions are quantized as convolutions. They also tell
weights from activations by identity only (`_find_param_by_identity`).
"""

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import qwix
from flax import linen as nn
from qwix._src.utils import flax_util

from jaxdl.errors import UserInputError

SCHEMES = {"int8": jnp.int8, "int4": jnp.int4, "fp8": jnp.float8_e4m3fn}
MODES = ("static", "dynamic", "weight")
PATCH_CONV = "jaxdl.models.patch_conv.patch_conv"


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How to quantize: `scheme` (int8, int4, fp8), `mode` (static, dynamic, weight).

    `where` prefixes the field names in error messages: '--' for `jaxdl quantize`'s flags,
    'config.quant.' for quantization-aware training."""

    scheme: str = "int8"
    mode: str = "static"
    where: str = "--"

    def __post_init__(self) -> None:
        scheme, mode = f"{self.where}scheme={self.scheme}", f"{self.where}mode={self.mode}"
        if self.scheme not in SCHEMES:
            raise UserInputError(f"{scheme}: unknown scheme; choose one of {', '.join(SCHEMES)}.")
        if self.mode not in MODES:
            raise UserInputError(
                f"{mode}: unknown mode; choose one of {', '.join(MODES)} (static: activations "
                "calibrated beforehand, dynamic: at run time, weight: weights only)."
            )
        if self.scheme == "int4" and self.mode != "weight":
            raise UserInputError(
                f"{scheme} {mode}: 4-bit activations have no kernels in XLA (its CPU "
                f"convolution rejects them); use {self.where}mode=weight with int4, or int8."
            )

    @property
    def qtype(self) -> Any:
        return SCHEMES[self.scheme]

    @property
    def name(self) -> str:
        return f"{self.scheme} {self.mode}"


def _find_param_by_identity(x: Any, ptq_array_type: Any = None) -> str | None:
    """The name of the current module's parameter that `x` is (or is a unary function of, e.g.
    a dtype cast), else None.

    Replaces Qwix's `find_param`, which, failing that, takes any parameter of `x`'s shape: a
    (64, 64) batch entering a Dense layer with a (64, 64) kernel was then taken for a weight.
    """
    del ptq_array_type
    module = flax_util.get_current_module()
    params = module.scope._collection("params").items()  # Qwix reads the scope the same way.
    by_id = {}
    for name, value in params:
        value = flax_util.unbox(value)
        by_id[id(value)] = name
        if hasattr(value, "array"):  # A PTQ weight (WithAux) is found by the array it holds.
            by_id[id(value.array)] = name
    x = getattr(x, "array", x)
    while True:
        if id(x) in by_id:
            return by_id[id(x)]
        parent = getattr(x, "parent", None) if isinstance(x, jax.core.Tracer) else None
        if parent is not None and len(parent.in_tracers) == 1:
            x = parent.in_tracers[0]
            continue
        const = x.get_const() if hasattr(x, "get_const") else None
        return by_id.get(id(const)) if const is not None else None


@contextlib.contextmanager
def _weights_found_by_identity() -> Iterator[None]:
    """Qwix's `find_param` replaced by `_find_param_by_identity` for one quantized operation.

    (Qwix switches its interceptions off while one of its operations runs, so the replacement
    cannot be one of them; the provider methods below swap it in around their own call.)"""
    original = flax_util.find_param
    flax_util.find_param = _find_param_by_identity
    try:
        yield
    finally:
        flax_util.find_param = original


def _by_identity(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _weights_found_by_identity():
            return method(*args, **kwargs)

    return wrapped


class _PtqProvider(qwix.PtqProvider):
    dot_general = _by_identity(qwix.PtqProvider.dot_general)
    einsum = _by_identity(qwix.PtqProvider.einsum)
    conv_general_dilated = _by_identity(qwix.PtqProvider.conv_general_dilated)

    def get_intercept_map(self) -> dict[str, Callable[..., Any]]:
        return super().get_intercept_map() | {PATCH_CONV: self.conv_general_dilated}


class _QtProvider(qwix.QtProvider):
    dot_general = _by_identity(qwix.QtProvider.dot_general)
    einsum = _by_identity(qwix.QtProvider.einsum)
    conv_general_dilated = _by_identity(qwix.QtProvider.conv_general_dilated)

    def get_intercept_map(self) -> dict[str, Callable[..., Any]]:
        return super().get_intercept_map() | {PATCH_CONV: self.conv_general_dilated}


def _rule_fields(spec: QuantSpec) -> dict[str, Any]:
    return {
        "module_path": ".*",
        "weight_qtype": spec.qtype,
        "act_qtype": spec.qtype,
        "act_static_scale": spec.mode == "static",
    }


def ptq_model(model: nn.Module, spec: QuantSpec) -> nn.Module:
    """`model` computing with quantized weights and activations (modes static and dynamic); its
    parameters are the tree `quantize_params` returns."""
    return qwix.quantize_model(model, _PtqProvider([qwix.QuantizationRule(**_rule_fields(spec))]))


def qat_model(model: nn.Module, spec: QuantSpec) -> nn.Module:
    """`model` with fake quantization in the forward pass and straight-through gradients; it
    takes the float parameters. In mode 'static' it also keeps running activation ranges in the
    'quant_stats' collection (mutable while calibrating)."""
    if spec.mode == "weight":
        rule = qwix.QtRule(module_path=".*", weight_qtype=spec.qtype)
    else:
        rule = qwix.QtRule(**_rule_fields(spec))
    return qwix.quantize_model(model, _QtProvider([rule]))


def qat_spec(quant: Any) -> QuantSpec | None:
    """The quantization-aware training of `config.quant` (None when `scheme` is empty).

    Static ranges are left to `jaxdl quantize` (calibrated after training): Qwix 0.1.8 updates a
    convolution's running ranges inside its custom VJP, which fails under jit."""
    if not quant.scheme:
        return None
    spec = QuantSpec(quant.scheme, quant.mode, where="config.quant.")
    if spec.mode == "static":
        raise UserInputError(
            "config.quant.mode=static: quantization-aware training takes 'dynamic' or 'weight'; "
            "train with one of them, then `jaxdl quantize --mode static` calibrates the ranges."
        )
    return spec


def calibrate(
    model: nn.Module,
    spec: QuantSpec,
    variables: dict[str, Any],
    inputs: Iterable[tuple[jax.Array, dict[str, jax.Array]]],
) -> dict[str, Any]:
    """Activation ranges ('quant_stats') averaged over `inputs`, (input, model kwargs) pairs; {}
    unless the mode is 'static'. Deterministic: a pure function of the weights and the inputs."""
    if spec.mode != "static":
        return {}
    qat = qat_model(model, spec)
    # Qwix tells weights from activations by identity with the module's parameters, so they
    # must arrive as JAX arrays (a NumPy array is converted, and the copy is not recognised).
    variables = jax.tree.map(jnp.asarray, variables)

    # Not jitted: Qwix 0.1.8 updates a convolution's statistics inside its custom VJP, which
    # leaks a tracer under jit; run op by op, the update is an ordinary value.
    def update(stats: Any, x: jax.Array, kwargs: dict[str, jax.Array]) -> Any:
        _, updated = qat.apply(
            {**variables, "quant_stats": stats}, x, train=False, mutable=["quant_stats"], **kwargs
        )
        return updated["quant_stats"]

    stats = None
    for x, kwargs in inputs:
        if stats is None:
            stats = qat.init(jax.random.key(0), x, train=False, **kwargs)["quant_stats"]
        stats = update(stats, x, kwargs)
    if stats is None:
        raise UserInputError("calibration needs at least one batch of training data.")
    return stats


def quantize_params(
    model: nn.Module,
    spec: QuantSpec,
    params: Any,
    example: tuple[jax.Array, dict[str, jax.Array]],
    quant_stats: Any,
) -> Any:
    """The quantized parameter tree for `apply_fn(model, spec)` from float `params`."""
    params = jax.tree.map(jnp.asarray, nn.unbox(params))
    if spec.mode == "weight":
        return jax.tree.map(lambda p: _quantize_weight(p, spec.qtype), params)
    x, kwargs = example
    abstract = jax.eval_shape(
        lambda: ptq_model(model, spec).init(jax.random.key(0), x, train=False, **kwargs)
    )["params"]
    return qwix.quantize_params(params, abstract, quant_stats)


def abstract_params(
    model: nn.Module, spec: QuantSpec, float_params: Any, example: tuple[Any, dict[str, Any]]
) -> Any:
    """The structure of `quantize_params`' result, with shapes only (for loading from disk)."""

    def build(params: Any) -> Any:
        if spec.mode != "static":
            return quantize_params(model, spec, params, example, {})
        x, kwargs = example
        return nn.unbox(
            ptq_model(model, spec).init(jax.random.key(0), x, train=False, **kwargs)["params"]
        )

    return jax.eval_shape(build, float_params)


def apply_fn(model: nn.Module, spec: QuantSpec) -> Callable[..., jax.Array]:
    """`apply(variables, x, train=False, **kwargs)` of the quantized model, like `model.apply`."""
    if spec.mode != "weight":
        return ptq_model(model, spec).apply

    def apply(variables: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        params = jax.tree.map(_dequantize, variables["params"], is_leaf=_is_qarray)
        return model.apply({**variables, "params": params}, *args, **kwargs)

    return apply


def _quantize_weight(param: jax.Array, qtype: Any) -> Any:
    """Kernels and embeddings (2-D and up) quantized, one scale per last-axis channel; biases and
    norm scales (1-D) stay float32: they are a small share of the bytes and sensitive."""
    if param.ndim < 2:
        return param
    return qwix.quantize(param, qtype, channelwise_axes=(param.ndim - 1,))


def _is_qarray(leaf: Any) -> bool:
    return isinstance(leaf, qwix.QArray)


def _dequantize(leaf: Any) -> jax.Array:
    return qwix.dequantize(leaf) if _is_qarray(leaf) else leaf


def bits(dtype: Any) -> int:
    """Storage bits of one element of `dtype` (int4: 4, though numpy keeps it in a byte)."""
    dtype = jnp.dtype(dtype)
    return 4 if dtype in (jnp.dtype(jnp.int4), jnp.dtype(jnp.uint4)) else dtype.itemsize * 8


def parameter_bytes(params: Any) -> int:
    """Bytes of every array in a (possibly quantized) parameter tree, sub-byte types packed."""
    return sum(-(-leaf.size * bits(leaf.dtype) // 8) for leaf in jax.tree.leaves(params))


def nonzero_parameters(params: Any) -> int:
    """Non-zero weight values (quantized values count as their integers), scales excluded."""
    total = 0
    for leaf in jax.tree.leaves(params, is_leaf=_is_qarray):
        values = leaf.qvalue if _is_qarray(leaf) else leaf
        total += int(np.count_nonzero(np.asarray(values).astype(np.float32)))
    return total
