"""Attribution maps: which input values a classifier's chosen logit depends on.

Every method is a pure function of `logits_fn(inputs) -> logits`, a batch (B, *S) -> (B, K)
map in inference mode, so examples do not interact and the gradient of the summed target
logits is each example's own gradient. All return maps of the inputs' shape (B, *S).

- saliency: |d logit / d x| (Simonyan et al. 2014).
- gradxinput: x * d logit / d x (Shrikumar et al. 2016).
- smoothgrad: the gradient averaged over noisy copies of x, noise std `noise` times each
  example's value range (Smilkov et al. 2017).
- integrated gradients: (x - baseline) times the gradient averaged along the straight path from
  the baseline, by the trapezoid rule over `steps` intervals (Sundararajan et al. 2017); the
  maps sum to f(x) - f(baseline) up to the rule's error, which `completeness_error` measures.
- Grad-CAM: ReLU of a layer's channels weighted by their spatially averaged gradients,
  resized to the input (Selvaraju et al. 2017).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

LogitsFn = Callable[[jax.Array], jax.Array]
# (inputs, delta) -> (logits, activation): the layer's output plus `delta`, fed on through
# the model, so d logit / d delta at delta = 0 is the gradient with respect to the activation.
LayerFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def target_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """(B,) logit of each example's target class."""
    return jnp.take_along_axis(logits, targets[:, None].astype(jnp.int32), axis=1)[:, 0]


def gradient(logits_fn: LogitsFn, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """d logit[target] / d inputs, per example."""
    return jax.grad(lambda x: jnp.sum(target_logits(logits_fn(x), targets)))(inputs)


def saliency(logits_fn: LogitsFn, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.abs(gradient(logits_fn, inputs, targets))


def gradxinput(logits_fn: LogitsFn, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    return inputs * gradient(logits_fn, inputs, targets)


def smoothgrad_noise(key: jax.Array, inputs: jax.Array, samples: int, noise: float) -> jax.Array:
    """(samples, B, *S) Gaussian noise, std `noise` times each example's max - min."""
    axes = tuple(range(1, inputs.ndim))
    spread = inputs.max(axis=axes, keepdims=True) - inputs.min(axis=axes, keepdims=True)
    return jax.random.normal(key, (samples, *inputs.shape)) * noise * spread


def smoothgrad(
    logits_fn: LogitsFn,
    inputs: jax.Array,
    targets: jax.Array,
    key: jax.Array,
    samples: int = 50,
    noise: float = 0.15,
) -> jax.Array:
    """The mean gradient over `samples` noisy copies of the inputs (one batch pass each)."""
    draws = smoothgrad_noise(key, inputs, samples, noise)
    grads = jax.lax.map(lambda eps: gradient(logits_fn, inputs + eps, targets), draws)
    return grads.mean(axis=0)


def integrated_gradients(
    logits_fn: LogitsFn,
    inputs: jax.Array,
    targets: jax.Array,
    baseline: jax.Array,
    steps: int = 128,
) -> jax.Array:
    """(x - baseline) * the trapezoid-rule mean of the gradient along the straight path.

    `baseline` broadcasts against `inputs` (one image for all, or one per example).
    """
    baseline = jnp.broadcast_to(baseline, inputs.shape).astype(inputs.dtype)
    alphas = jnp.linspace(0.0, 1.0, steps + 1)
    # Trapezoid weights: half at both ends, one inside, over `steps` intervals.
    weights = jnp.ones(steps + 1).at[0].set(0.5).at[-1].set(0.5) / steps
    delta = inputs - baseline

    def weighted_gradient(pair: tuple[jax.Array, jax.Array]) -> jax.Array:
        alpha, weight = pair
        return weight * gradient(logits_fn, baseline + alpha * delta, targets)

    mean_gradient = jax.lax.map(weighted_gradient, (alphas, weights)).sum(axis=0)
    return delta * mean_gradient


def completeness_error(
    logits_fn: LogitsFn,
    inputs: jax.Array,
    targets: jax.Array,
    baseline: jax.Array,
    attributions: jax.Array,
) -> jax.Array:
    """(B,) |sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)|."""
    baseline = jnp.broadcast_to(baseline, inputs.shape).astype(inputs.dtype)
    change = target_logits(logits_fn(inputs), targets) - target_logits(logits_fn(baseline), targets)
    total = attributions.reshape(attributions.shape[0], -1).sum(axis=1)
    return jnp.abs(total - change) / jnp.maximum(jnp.abs(change), 1e-12)


def gradcam(layer_fn: LayerFn, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """(B, *spatial) non-negative class activation maps at the input's spatial size.

    The layer's output must be channels-last, (B, *spatial, C), like every convolution here.
    """
    activation_shape = jax.eval_shape(lambda x: layer_fn(x, jnp.float32(0.0))[1], inputs).shape

    def target_sum(delta: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits, activation = layer_fn(inputs, delta)
        return jnp.sum(target_logits(logits, targets)), activation

    zeros = jnp.zeros(activation_shape, jnp.float32)
    grads, activation = jax.grad(target_sum, has_aux=True)(zeros)
    spatial_axes = tuple(range(1, activation.ndim - 1))
    channel_weights = grads.mean(axis=spatial_axes, keepdims=True)
    cam = jax.nn.relu((channel_weights * activation).sum(axis=-1))
    size = inputs.shape[1 : 1 + len(spatial_axes)]
    return jax.image.resize(cam, (cam.shape[0], *size), "bilinear").clip(min=0.0)
