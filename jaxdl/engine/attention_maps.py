"""`jaxdl attention`: a PNG of where a trained Transformer looks, for a few test images.

Every attention layer sows its weights (models/transformer.py); they are read by applying the
model with `mutable=['intermediates']`. Each row of the figure is one test image: the image,
the attention rollout over all layers (Abnar & Zuidema 2020: head-averaged weights plus the
residual identity, renormalised and multiplied through the layers), then the last layer's
head-averaged attention. Both maps show what the pooled output attends to: the class token's
row with `pool='cls'`, the mean of the patch rows with `pool='gap'`.
"""

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data
from jaxdl.engine import plots
from jaxdl.engine.evaluation import restore_checkpoint
from jaxdl.errors import UserInputError

DEFAULT_FILE = "attention_maps.png"


def attention_weights(state: Any, images: jax.Array) -> list[jax.Array]:
    """Every attention layer's weights (batch, heads, queries, keys), in the order they ran."""
    variables = {"params": state.params, **state.model_state}
    _, sown = state.apply_fn(variables, images, train=False, mutable=["intermediates"])
    found: list[tuple[str, jax.Array]] = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(sown.get("intermediates", {}))[0]:
        if any(getattr(key, "key", None) == "attention_weights" for key in path):
            found.append((jax.tree_util.keystr(path), leaf))
    # Paths name the blocks (block_0, block_1, ...): sort them by their numbers.
    return [leaf for _, leaf in sorted(found, key=lambda item: _natural_key(item[0]))]


def _natural_key(text: str) -> list[Any]:
    parts, number = [], ""
    for char in text + " ":
        if char.isdigit():
            number += char
            continue
        if number:
            parts.append(int(number))
            number = ""
        parts.append(char)
    return parts


def rollout(weights: list[jax.Array]) -> jax.Array:
    """(batch, tokens, tokens): attention rollout through all layers."""
    result = None
    for layer in weights:
        mean = layer.astype(jnp.float32).mean(axis=1)
        mixed = 0.5 * mean + 0.5 * jnp.eye(mean.shape[-1])
        mixed = mixed / mixed.sum(axis=-1, keepdims=True)
        result = mixed if result is None else mixed @ result
    return result


def pooled_map(attention: jax.Array, has_cls: bool) -> np.ndarray:
    """(batch, side, side) attention of the pooled output over the patch grid."""
    # The class token's row, or (global average pooling) the mean of the patches' rows.
    row = attention[:, 0, 1:] if has_cls else attention.mean(axis=1)
    side = math.isqrt(row.shape[-1])
    if side * side != row.shape[-1]:
        raise UserInputError(f"attention over {row.shape[-1]} patches is not a square grid.")
    row = row / row.max(axis=-1, keepdims=True)
    return np.asarray(row.reshape(-1, side, side))


def write_attention_maps(run_dir: Path, which: str, num_images: int, out: Path | None) -> Path:
    """Writes the figure for checkpoint `which` of `run_dir`; returns its path. Never
    overwrites a file: an existing `out` is an error."""
    if num_images < 1:
        raise UserInputError(f"--images {num_images}: must be at least 1.")
    out = out or run_dir / DEFAULT_FILE
    if out.exists():
        raise UserInputError(f"{out} exists; pass --out with a new file name (it is kept as is).")
    plan, step, state = restore_checkpoint(run_dir, which)
    model = getattr(plan.task, "model", None)
    batch = next(iter(data.eval_batches(plan.dataset, "test", batch_size=num_images)))
    count = int(batch["mask"].sum())
    images = jnp.asarray(batch["input"][:count])
    weights = attention_weights(state, images)
    if not weights:
        name = plan.config.model.get("name", "?")
        raise UserInputError(
            f"model {name!r} of {run_dir} has no attention layers; attention maps need a "
            "Transformer model such as 'vit'."
        )
    has_cls = getattr(model, "pool", "gap") == "cls"
    maps = {
        "rollout": pooled_map(rollout(weights), has_cls),
        "last layer": pooled_map(weights[-1].astype(jnp.float32).mean(axis=1), has_cls),
    }
    _plot(np.asarray(images), np.asarray(batch["label"][:count]), maps, step, out)
    return out


def _plot(
    images: np.ndarray, labels: np.ndarray, maps: dict[str, np.ndarray], step: int, out: Path
) -> None:
    plt = plots.pyplot()

    rows, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    height, width = images.shape[1:3]
    for row, image in enumerate(images):
        shown = image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1)
        cmap = "gray" if image.shape[-1] == 1 else None
        axes[row, 0].imshow(shown, cmap=cmap)
        axes[row, 0].set_title(f"label {labels[row]}", fontsize=8)
        for col, (title, grids) in enumerate(maps.items(), start=1):
            axes[row, col].imshow(shown, cmap=cmap)
            # Nearest-neighbour upsampling keeps the patch grid visible.
            axes[row, col].imshow(
                grids[row],
                cmap="inferno",
                alpha=0.6,
                extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            )
            axes[row, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"attention at step {step}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
