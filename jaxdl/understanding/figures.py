"""The pictures `jaxdl explain` writes, and writing them (with their raw arrays) atomically."""

import io
import math
from pathlib import Path

import numpy as np

from jaxdl.engine import plots
from jaxdl.engine.workdir import write_atomic

# Signed maps (gradient x input, integrated gradients) get a diverging colour map centred at
# zero; magnitudes (saliency, SmoothGrad, Grad-CAM, rollout) a sequential one.
SIGNED_CMAP, MAGNITUDE_CMAP = "bwr", "inferno"


def as_picture(example: np.ndarray) -> tuple[np.ndarray, str | None]:
    """One example as something imshow draws: (H, W) gray or (H, W, 3) RGB images; other
    inputs (vectors, signals) as a (channels, length) strip."""
    if example.ndim == 3 and example.shape[-1] in (1, 3):
        if example.shape[-1] == 1:
            return example[..., 0], "gray"
        low, high = example.min(), example.max()
        return (example - low) / max(high - low, 1e-12), None
    if example.ndim == 2 and example.shape[0] > 1 and example.shape[1] > 1:
        return example.T, "gray"  # (length, channels) signal: channels as rows.
    return example.reshape(1, -1), "gray"


def reduce_channels(maps: np.ndarray, signed: bool, image_like: bool) -> np.ndarray:
    """(N, H, W) display maps of (N, H, W, C) image attributions: the channel sum (signed) or
    the largest magnitude over channels."""
    if not image_like:
        return maps
    return maps.sum(axis=-1) if signed else np.abs(maps).max(axis=-1)


def attribution_grid(
    inputs: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    signed: bool,
    title: str,
) -> object:
    """Examples in pairs of cells, four pairs a row: the input, then the map over it."""
    plt = plots.pyplot()
    per_row = min(4, len(inputs))
    rows = math.ceil(len(inputs) / per_row)
    fig, axes = plt.subplots(
        rows, 2 * per_row, figsize=(2.0 * 2 * per_row, 2.2 * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for index, (example, heat) in enumerate(zip(inputs, maps, strict=True)):
        row, col = divmod(index, per_row)
        picture, cmap = as_picture(example)
        heat = np.asarray(heat).reshape(picture.shape[:2])
        ax_in, ax_map = axes[row, 2 * col], axes[row, 2 * col + 1]
        ax_in.imshow(picture, cmap=cmap)
        mark = "" if predictions[index] == labels[index] else " (wrong)"
        ax_in.set_title(f"label {labels[index]} pred {predictions[index]}{mark}", fontsize=8)
        ax_map.imshow(picture, cmap=cmap)
        if signed:
            bound = max(float(np.abs(heat).max()), 1e-12)
            ax_map.imshow(heat, cmap=SIGNED_CMAP, vmin=-bound, vmax=bound, alpha=0.65)
        else:
            ax_map.imshow(heat, cmap=MAGNITUDE_CMAP, vmin=0.0, alpha=0.65)
        ax_map.set_title("map", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# Token maps: cells per row, and the most tokens drawn per example (the .npz has them all).
TOKENS_PER_ROW, MAX_TOKENS_DRAWN = 48, 480


def token_scores(maps: np.ndarray, signed: bool) -> np.ndarray:
    """(N, T) per-token scores of (N, T, D) embedding attributions: the sum over the embedding
    (signed, so IG's completeness carries over) or its L2 norm (magnitudes)."""
    return maps.sum(axis=-1) if signed else np.sqrt((maps**2).sum(axis=-1))


def token_grid(
    texts: list[list[str]],
    scores: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    signed: bool,
    title: str,
) -> object:
    """One block per example: its tokens (`texts[i]`, the first len(texts[i]) of `scores[i]`)
    as cells coloured by their score, TOKENS_PER_ROW to a row."""
    plt = plots.pyplot()
    shown = [text[:MAX_TOKENS_DRAWN] for text in texts]
    rows = [max(1, math.ceil(len(text) / TOKENS_PER_ROW)) for text in shown]
    fig, axes = plt.subplots(
        len(shown),
        1,
        figsize=(0.22 * TOKENS_PER_ROW + 0.5, 0.3 * sum(rows) + 0.45 * len(shown) + 0.6),
        gridspec_kw={"height_ratios": rows},
        squeeze=False,
    )
    cmap = plt.get_cmap(SIGNED_CMAP if signed else MAGNITUDE_CMAP).copy()
    cmap.set_bad("white")
    for index, (ax, text, count) in enumerate(zip(axes[:, 0], shown, rows, strict=True)):
        cells = np.full(count * TOKENS_PER_ROW, np.nan)
        cells[: len(text)] = scores[index][: len(text)]
        bound = max(float(np.nanmax(np.abs(cells))) if text else 0.0, 1e-12)
        low = -bound if signed else 0.0
        ax.imshow(cells.reshape(count, TOKENS_PER_ROW), cmap=cmap, vmin=low, vmax=bound)
        for position, token in enumerate(text):
            row, col = divmod(position, TOKENS_PER_ROW)
            ax.text(col, row, token, ha="center", va="center", fontsize=8, family="monospace")
        mark = "" if predictions[index] == labels[index] else " (wrong)"
        more = (
            f", first {MAX_TOKENS_DRAWN} of {len(texts[index])} tokens"
            if len(texts[index]) > MAX_TOKENS_DRAWN
            else ""
        )
        ax.set_title(
            f"label {labels[index]} pred {predictions[index]}{mark}{more}", fontsize=7, loc="left"
        )
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, title: str) -> object:
    """(N, H, W, C) images in [0, 1], as square a grid as fits."""
    plt = plots.pyplot()
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images, strict=False):
        picture, cmap = as_picture(image)
        ax.imshow(picture, cmap=cmap, vmin=0.0, vmax=1.0)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def embedding_scatter(coords: np.ndarray, labels: np.ndarray, title: str) -> object:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for index, label in enumerate(classes):
        chosen = labels == label
        ax.scatter(*coords[chosen].T, s=9, color=cmap(index % cmap.N), label=str(label))
    if len(classes) <= 20:
        ax.legend(title="class", fontsize=7, markerscale=1.5, loc="best")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def neighbor_grid(
    queries: np.ndarray,
    query_labels: np.ndarray,
    neighbors: np.ndarray,
    neighbor_labels: np.ndarray,
    title: str,
) -> object:
    """One row per query: the query, then its nearest training examples (nearest first)."""
    plt = plots.pyplot()
    rows, k = neighbor_labels.shape
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.3 * (k + 1), 1.4 * rows + 0.4), squeeze=False)
    for row in range(rows):
        for col in range(k + 1):
            image = queries[row] if col == 0 else neighbors[row, col - 1]
            label = query_labels[row] if col == 0 else neighbor_labels[row, col - 1]
            picture, cmap = as_picture(image)
            axes[row, col].imshow(picture, cmap=cmap)
            axes[row, col].set_title(f"{'query' if col == 0 else 'train'} {label}", fontsize=7)
            axes[row, col].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def text_neighbors(
    queries: list[str],
    query_labels: np.ndarray,
    neighbors: list[list[str]],
    neighbor_labels: np.ndarray,
    distances: np.ndarray,
    title: str,
    width: int = 90,
) -> object:
    """The neighbours of token sequences, as lines of text: each query, then its nearest
    training sequences with their labels and distances (lines cut at `width` characters)."""
    plt = plots.pyplot()

    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "\u2026"

    lines: list[tuple[str, bool]] = []
    for row, query in enumerate(queries):
        lines.append((f"query, label {query_labels[row]}: {cut(query)}", True))
        for col, text in enumerate(neighbors[row]):
            label, distance = neighbor_labels[row, col], distances[row, col]
            lines.append((f"  train, label {label}, distance {distance:.3g}: {cut(text)}", False))
    fig = plt.figure(figsize=(0.075 * (width + 40), 0.2 * len(lines) + 0.8))
    for index, (line, is_query) in enumerate(lines):
        y = 1.0 - (index + 0.5) / len(lines)
        weight = "bold" if is_query else "normal"
        fig.text(0.01, y * 0.92, line, family="monospace", fontsize=7, weight=weight, va="center")
    fig.suptitle(title, fontsize=10)
    return fig


def write_outputs(fig: object, arrays: dict[str, np.ndarray], png: Path) -> Path:
    """The figure to `png` and `arrays` to the .npz beside it, each written atomically
    (engine/workdir.write_atomic), so an interrupted command leaves no half-written file."""
    plt = plots.pyplot()
    npz = png.with_suffix(".npz")
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        packed = io.BytesIO()
        np.savez(packed, **arrays)
        write_atomic(npz, packed.getvalue())
        plots.save_figure(fig, png, dpi=100)
    finally:
        plt.close(fig)
    return npz
