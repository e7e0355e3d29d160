"""Looking inside a saved classifier without changing its model code.

Flax's `nn.intercept_methods` sees every submodule call while the model is applied: that is
enough to list the convolution and dense layers in the order they run, to read the input of
the final dense layer (the penultimate features), to add a perturbation to one layer's
output, whose gradient is the gradient with respect to that activation (Grad-CAM), and to
replace a token model's embedded inputs (gradients of token ids are taken at the embeddings).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserInputError


@dataclass(frozen=True)
class Layer:
    path: str  # The module path, e.g. 'Conv_3' or '_Block_2/Conv_1'.
    kind: str  # 'Conv' or 'Dense'.
    output_shape: tuple[int, ...]


def _path(module: nn.Module) -> str:
    return "/".join(module.path)


def _is_layer_call(context: Any) -> bool:
    return context.method_name == "__call__" and isinstance(context.module, nn.Conv | nn.Dense)


def _is_token_embedding(args: tuple, out: Any, ids_shape: tuple[int, ...]) -> bool:
    """A call that maps the (B, T) integer ids to (B, T, D) floats: an nn.Embed, or a model's
    own embedding method (the RNN's `_inputs`)."""
    ids, shape = (args[0] if args else None), tuple(ids_shape)
    return (
        isinstance(ids, jax.Array)
        and jnp.issubdtype(ids.dtype, jnp.integer)
        and tuple(ids.shape) == shape
        and isinstance(out, jax.Array)
        and jnp.issubdtype(out.dtype, jnp.floating)
        and tuple(out.shape[:-1]) == shape
        and out.ndim == len(shape) + 1
    )


class Classifier:
    """A restored classification state as functions of a batch of inputs (inference mode).

    `extras` are the model's other arguments for these examples (the sequences' lengths).
    """

    def __init__(self, state: Any, extras: dict[str, jax.Array] | None = None):
        self._apply = state.apply_fn
        self._variables = {"params": state.params, **state.model_state}
        self.params = state.params
        self.extras = extras or {}

    def _run(self, inputs: jax.Array, interceptor: Callable | None = None) -> jax.Array:
        if interceptor is None:
            return self._apply(self._variables, inputs, train=False, **self.extras)
        with nn.intercept_methods(interceptor):
            return self._apply(self._variables, inputs, train=False, **self.extras)

    def logits(self, inputs: jax.Array) -> jax.Array:
        return self._run(inputs)

    def layers(self, inputs: jax.Array) -> list[Layer]:
        """The Conv and Dense layers in the order they run (shapes only; nothing computed)."""
        found: list[Layer] = []

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if _is_layer_call(context):
                kind = "Conv" if isinstance(context.module, nn.Conv) else "Dense"
                found.append(Layer(_path(context.module), kind, tuple(out.shape)))
            return out

        jax.eval_shape(lambda x: self._run(x, record), inputs)
        return found

    def convolutions(self, inputs: jax.Array) -> list[str]:
        """Paths of the convolutions whose outputs have spatial axes, in the order they run."""
        return [
            layer.path
            for layer in self.layers(inputs)
            if layer.kind == "Conv" and len(layer.output_shape) >= 3
        ]

    def with_layer(
        self, path: str
    ) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        """(inputs, delta) -> (logits, the layer's output + delta), delta fed on through the
        model. The layer must run once per call (a layer inside nn.scan is not supported)."""

        def layer_fn(inputs: jax.Array, delta: jax.Array) -> tuple[jax.Array, jax.Array]:
            seen: list[jax.Array] = []

            def perturb(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                if _is_layer_call(context) and _path(context.module) == path and not seen:
                    out = out + jnp.asarray(delta, out.dtype)
                    seen.append(out)
                return out

            logits = self._run(inputs, perturb)
            return logits, seen[0].astype(jnp.float32)

        return layer_fn

    def token_embeddings(self, ids: jax.Array) -> jax.Array:
        """(B, T, D) float32: the embedded ids, the output of the first call (innermost first)
        that maps the ids to one vector per token."""
        seen: list[jax.Array] = []

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if not seen and _is_token_embedding(args, out, ids.shape):
                seen.append(out)
            return out

        self._run(ids, record)
        if not seen:
            raise UserInputError(
                "the model has no call that embeds its token ids (one vector per token), so "
                "there is nothing to take gradients at; use --method embedding or neighbors."
            )
        return seen[0].astype(jnp.float32)

    def logits_of_embeddings(self, ids: jax.Array) -> Callable[[jax.Array], jax.Array]:
        """embeddings (B, T, D) -> logits: the model on `ids` with the call `token_embeddings`
        reads returning `embeddings` instead."""

        def logits_fn(embeddings: jax.Array) -> jax.Array:
            replaced: list[bool] = []

            def replace(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                if not replaced and _is_token_embedding(args, out, ids.shape):
                    replaced.append(True)
                    return embeddings.astype(out.dtype)
                return out

            return self._run(ids, replace)

        return logits_fn

    def penultimate(self, inputs: jax.Array) -> jax.Array:
        """(B, D): the input of the last dense layer that runs, the classifier head."""
        seen: list[jax.Array] = []

        def record(next_fun, args, kwargs, context):
            if _is_layer_call(context) and isinstance(context.module, nn.Dense):
                seen[:] = [args[0]]
            return next_fun(*args, **kwargs)

        self._run(inputs, record)
        if not seen:
            raise UserInputError("the model has no dense classifier head to read features from.")
        features = seen[0]
        return features.reshape(features.shape[0], -1).astype(jnp.float32)

    def first_layer(self, inputs: jax.Array) -> tuple[Layer, jax.Array]:
        """The first Conv or Dense layer that runs and its kernel."""
        layers = self.layers(inputs)
        if not layers:
            raise UserInputError("the model has no convolution or dense layer.")
        first = layers[0]
        params = self.params
        for name in first.path.split("/"):
            params = params[name]
        kernel = params["kernel"]
        return first, jnp.asarray(getattr(kernel, "value", kernel))
