"""Mixup and CutMix: batch-level augmentations that mix each example with another one.

Example i is paired with example `perm[i]` of the same (global) batch, `perm` a random
permutation, and mixed with weight `lam ~ Beta(alpha, alpha)` drawn from the example's own key.
Both give the batch soft labels, `batch['target']` (B, num_classes) float32 with rows summing to
1, which the classification loss uses in place of the one-hot labels; `batch['label']` keeps
the label of the unmixed image (for the train accuracy).
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]


def _mixed(
    batch: Batch, images: jax.Array, own: jax.Array, partner: jax.Array, classes: int
) -> Batch:
    """`batch` with the mixed images and soft labels: weight `own` (B,) on the example's label,
    the rest on its partner's."""
    labels = jax.nn.one_hot(batch["label"], classes, dtype=jnp.float32)
    own = own.astype(jnp.float32)[:, None]
    return {**batch, "input": images, "target": own * labels + (1 - own) * labels[partner]}


@dataclasses.dataclass(frozen=True)
class Mixup:
    """Each image becomes `lam * image + (1 - lam) * partner` (Zhang et al. 2018)."""

    alpha: float
    num_classes: int

    def mix(self, batch: Batch, partner: jax.Array, lam: jax.Array, keys: jax.Array) -> Batch:
        """`keys` go unused: the weights `lam` are all mixup draws (CutMix.mix needs them)."""
        images = batch["input"]
        weight = lam.astype(images.dtype).reshape(-1, *(1,) * (images.ndim - 1))
        mixed = weight * images + (1 - weight) * images[partner]
        return _mixed(batch, mixed, lam, partner, self.num_classes)


def cutmix_box(
    key: jax.Array, lam: jax.Array, height: int, width: int
) -> tuple[jax.Array, jax.Array]:
    """(mask (H, W), the fraction of the image it covers): a box of about `1 - lam` of the
    image's area, centred on a uniform pixel and clipped to the image.

    The label weight is the area actually pasted, so a box cut by the border counts as smaller.
    """
    side = jnp.sqrt(1.0 - lam)
    box_h = jnp.floor(height * side).astype(jnp.int32)
    box_w = jnp.floor(width * side).astype(jnp.int32)
    centre = jnp.floor(jax.random.uniform(key, (2,)) * jnp.array([height, width]))
    top = jnp.minimum(centre[0], height - 1).astype(jnp.int32) - box_h // 2
    left = jnp.minimum(centre[1], width - 1).astype(jnp.int32) - box_w // 2
    y0, y1 = jnp.clip(top, 0, height), jnp.clip(top + box_h, 0, height)
    x0, x1 = jnp.clip(left, 0, width), jnp.clip(left + box_w, 0, width)
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    mask = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return mask, (y1 - y0) * (x1 - x0) / (height * width)


@dataclasses.dataclass(frozen=True)
class CutMix:
    """A box of the partner image is pasted into each image (Yun et al. 2019)."""

    alpha: float
    num_classes: int

    def mix(self, batch: Batch, partner: jax.Array, lam: jax.Array, keys: jax.Array) -> Batch:
        images = batch["input"]
        height, width = images.shape[1:3]
        masks, pasted = jax.vmap(lambda key, lam: cutmix_box(key, lam, height, width))(keys, lam)
        mixed = jnp.where(masks[..., None], images[partner], images)
        return _mixed(batch, mixed, 1.0 - pasted, partner, self.num_classes)


BatchMix = Mixup | CutMix


def mix_batch(mixes: Sequence[BatchMix], batch: Batch, key: jax.Array) -> Batch:
    """`batch` mixed by one of `mixes`, picked uniformly (timm switches mixup and cutmix so).

    The permutation and the per-example weights are drawn once, for whichever is picked (with
    its alpha), so the step compiles the Beta sampler once.
    """
    size = batch["input"].shape[0]
    pick_key, perm_key, example_key = jax.random.split(key, 3)
    pick = jax.random.randint(pick_key, (), 0, len(mixes)) if len(mixes) > 1 else 0
    alpha = jnp.asarray([mix.alpha for mix in mixes], jnp.float32)[pick]
    partner = jax.random.permutation(perm_key, size)
    keys = jax.random.split(example_key, (size, 2))  # Per example: its weight, its box.
    lam = jax.vmap(lambda key: jax.random.beta(key, alpha, alpha))(keys[:, 0])
    branches = [mix.mix for mix in mixes]
    return jax.lax.switch(pick, branches, batch, partner, lam, keys[:, 1])
