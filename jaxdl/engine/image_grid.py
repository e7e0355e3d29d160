"""Image grids: what a generative task's samples look like at each evaluation.

A task that makes images returns them from `Task.evaluation_images` (tasks/base.py); after each
validation pass the loop writes every named batch as one grid, `samples/NAME_STEP.png` in the
workdir and an image in TensorBoard under `samples/NAME`. Images are (N, H, W, C) floats in
[0, 1] with 1 or 3 channels; small ones are enlarged (nearest neighbour) so that an 8x8 digit
is legible.
"""

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

SAMPLES_DIR = "samples"
MIN_CELL = 32  # Pixels: smaller images are repeated up to at least this size.


def make_grid(images: np.ndarray, columns: int = 0, padding: int = 2) -> np.ndarray:
    """(N, H, W, C) in [0, 1] -> one (rows * H', columns * W', 3) uint8 grid, white between."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
        raise ValueError(f"images must be (N >= 1, H, W, 1 or 3); got {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    scale = max(1, math.ceil(MIN_CELL / max(images.shape[1:3])))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    count, height, width, _ = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, 3),
        np.float32,
    )
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return np.round(grid * 255).astype(np.uint8)


def write_png(path: Path, grid: np.ndarray) -> Path:
    # Imported here: matplotlib costs a second at start-up and only runs that evaluate images.
    import matplotlib.image

    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, grid)
    return path


def sample_path(workdir: Path, name: str, step: int) -> Path:
    return workdir / SAMPLES_DIR / f"{name}_{step:06d}.png"


def write_grids(
    workdir: Path,
    step: int,
    images: Mapping[str, np.ndarray],
    to_tensorboard: Callable[[int, str, np.ndarray], None],
) -> None:
    """Each named batch as `samples/NAME_STEP.png` and as TensorBoard image `samples/NAME`."""
    for name, batch in images.items():
        grid = make_grid(batch)
        write_png(sample_path(workdir, name, step), grid)
        to_tensorboard(step, f"{SAMPLES_DIR}/{name}", grid)
