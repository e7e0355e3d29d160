"""`jaxdl sample` for runs of generative tasks: images from a checkpoint, as a PNG grid or the
raw samples in an .npz (`images` (N, H, W, C) float32 in [0, 1], and `labels` when the model is
conditional). The same --seed gives the same images. An existing --out is never overwritten.
"""

import dataclasses
import os
import uuid
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.engine import image_grid
from jaxdl.engine.evaluation import restore_checkpoint
from jaxdl.errors import UserInputError

SUFFIXES = (".png", ".npz")


@dataclasses.dataclass(frozen=True)
class ImageSampleOptions:
    out: Path
    num: int = 64
    seed: int = 0
    label: int | None = None  # --class: every sample of this class (conditional models).
    steps: int = 0  # --steps: the sampler's steps (diffusion); 0: its default.

    def check(self) -> None:
        if self.num < 1:
            raise UserInputError(f"--num {self.num}: must be at least 1.")
        if self.steps < 0:
            raise UserInputError(f"--steps {self.steps}: must be >= 0 (0: the model's default).")
        if self.out.suffix not in SUFFIXES:
            raise UserInputError(
                f"--out {self.out}: give a .png path (a grid) or an .npz path (the raw samples)."
            )
        if self.out.exists():
            raise UserInputError(
                f"--out {self.out} exists; jaxdl sample never overwrites a file: choose another "
                "path or remove it."
            )
        if not self.out.parent.is_dir():
            raise UserInputError(f"--out {self.out}: the folder {self.out.parent} does not exist.")


def sample_images(run_dir: Path, which: str, options: ImageSampleOptions) -> int:
    """Writes `options.num` samples of checkpoint `which` to `options.out`; returns its step."""
    options.check()
    plan, step, state = restore_checkpoint(run_dir, which)
    task, classes = plan.task, plan.dataset.num_classes
    if options.label is not None and not task.conditional:
        raise UserInputError(
            f"--class {options.label}: the model of {run_dir} is not conditional; leave --class "
            "out (or train with model.conditional=True)."
        )
    if options.label is not None and not 0 <= options.label < classes:
        raise UserInputError(f"--class {options.label}: must be in 0..{classes - 1}.")
    if options.steps and not task.sampler_steps:
        raise UserInputError(
            f"--steps {options.steps}: {run_dir} is a {plan.config.task.name!r} run, which "
            "samples in one pass; --steps is for diffusion runs."
        )
    labels = None
    if task.conditional:
        labels = (
            jnp.full(options.num, options.label, jnp.int32)
            if options.label is not None
            else jnp.arange(options.num, dtype=jnp.int32) % classes
        )
    generate = jax.jit(task.generate_images, static_argnums=(2, 4))
    images = generate(state, jax.random.PRNGKey(options.seed), options.num, labels, options.steps)
    images = np.asarray(jax.device_get(images), np.float32)
    _write(options.out, images, None if labels is None else np.asarray(labels))
    return step


def _write(out: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    """Through a fresh temporary file renamed into place: a kill leaves no half-written --out."""
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{out.suffix}")
    try:
        if out.suffix == ".png":
            image_grid.write_png(tmp, image_grid.make_grid(images))
        else:
            arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
            np.savez(tmp, **arrays)
        if out.exists():  # Created while we sampled: still never overwritten.
            raise UserInputError(f"--out {out} appeared while sampling; nothing was written.")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
