"""`jaxdl attack`: a classifier run's clean and robust accuracy under FGSM or PGD.

    jaxdl attack --workdir runs/digits_cnn --method pgd --eps 0.1 --norm linf --steps 20
    jaxdl attack --workdir runs/digits_cnn --method fgsm --eps 0.1 --out attack_fgsm/

The attack (tasks/adversarial.py) runs against the model in inference mode (batch norm on its
running statistics, no dropout), on the split's examples in their fixed order; batch k's
random starts come from fold_in(PRNGKey(--seed), k), so a command gives the same numbers each
time. eps and --step_size are on [0, 1] pixels, scaled to the dataset's input range.
--out DIR (new) gets attack.json and, for image inputs, adversarial_examples.png: clean
images, their adversarial versions and the amplified perturbations, with the predictions.
The run itself is only read.
"""

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxdl.config_checks import ADVERSARIAL_NORMS as NORMS
from jaxdl.config_checks import ATTACK_METHODS as ATTACKS
from jaxdl.errors import UserInputError
from jaxdl.run_commands import _run_parser, quiet_logs, refuse_overrides

if TYPE_CHECKING:  # JAX is imported when the command runs, not when the CLI starts.
    from jaxdl.tasks.adversarial import Attack

SPLITS = ("train", "validation", "test")
RESULT_FILE = "attack.json"
GRID_FILE = "adversarial_examples.png"
GRID_EXAMPLES = 8


def _check_options(args: argparse.Namespace) -> None:
    """Every flag, before the run is read."""
    if args.method not in ATTACKS:
        raise UserInputError(f"--method {args.method}: choose one of {', '.join(ATTACKS)}.")
    if args.norm not in NORMS:
        raise UserInputError(f"--norm {args.norm}: choose one of {', '.join(NORMS)}.")
    if not (math.isfinite(args.eps) and args.eps > 0):
        raise UserInputError(f"--eps {args.eps}: give a radius > 0 on [0, 1] pixels, e.g. 0.1.")
    if args.steps < 1:
        raise UserInputError(f"--steps {args.steps}: PGD needs at least 1 step (20 is common).")
    if not (math.isfinite(args.step_size) and args.step_size >= 0):
        raise UserInputError(f"--step_size {args.step_size}: give >= 0 (0: 2.5 * eps / steps).")
    if args.restarts < 1:
        raise UserInputError(f"--restarts {args.restarts}: give at least 1.")
    if args.num < 0:
        raise UserInputError(f"--num {args.num}: give >= 0 examples (0: the whole split).")
    if args.out is not None and os.path.lexists(args.out):
        raise UserInputError(
            f"--out {args.out} exists; give a new directory (nothing is replaced)."
        )


def _check_run(run_dir: Path) -> None:
    """A classifier training run with checkpoints: refused cheaply, before setup."""
    from jaxdl.compression import inference
    from jaxdl.engine.workdir import load_config

    task = load_config(run_dir).task.name  # Explains a missing or broken workdir.
    if task != "classification":
        raise UserInputError(
            f"--workdir {run_dir} is a {task!r} run; jaxdl attack measures classifiers "
            "(task.name='classification')."
        )
    if inference.is_derived_run(run_dir):
        raise UserInputError(
            f"--workdir {run_dir} is a quantized or shrunk run; attack the float run it came "
            "from (attacks need the model's gradients)."
        )


def _attack_batch_fn(plan: Any, attack: "Attack") -> Any:
    """jit((state, batch, key) -> per-batch sums and the adversarial batch)."""
    import jax
    import jax.numpy as jnp

    from jaxdl.tasks.adversarial import cross_entropy_per_example, perturb
    from jaxdl.tasks.classification import model_kwargs, step_weights

    def attack_batch(state, batch, key):
        variables = {"params": state.params, **state.model_state}
        weights = step_weights(batch)

        def logits_fn(inputs):
            return state.apply_fn(variables, inputs, train=False, **model_kwargs(batch))

        def loss_fn(inputs):
            return cross_entropy_per_example(logits_fn(inputs), batch["label"], weights)

        adversarial, _ = perturb(loss_fn, batch["input"], attack, key)
        clean_pred = jnp.argmax(logits_fn(batch["input"]), -1)
        adversarial_pred = jnp.argmax(logits_fn(adversarial), -1)
        mask = batch["mask"] if weights is None else batch["mask"][:, None] * weights
        mask = jnp.broadcast_to(
            mask.reshape(mask.shape + (1,) * (clean_pred.ndim - mask.ndim)), clean_pred.shape
        )
        sums = {
            "count": jnp.sum(mask),
            "clean": jnp.sum((clean_pred == batch["label"]) * mask),
            "robust": jnp.sum((adversarial_pred == batch["label"]) * mask),
        }
        return sums, adversarial, clean_pred, adversarial_pred

    return jax.jit(attack_batch)


def run_attack(
    run_dir: Path, which: str, split: str, attack_options: dict, num: int, seed: int
) -> tuple["Attack", dict]:
    """The attack (`Attack.create(**attack_options)` in the dataset's input range), and the
    clean and robust accuracy of checkpoint `which` on `split` (the first `num` examples, 0:
    all) with up to GRID_EXAMPLES examples for the grid ('examples': numpy arrays)."""
    import jax

    from jaxdl.data import eval_batches
    from jaxdl.engine.evaluation import restore_checkpoint

    plan, step, state = restore_checkpoint(run_dir, which)
    if plan.dataset.vocab_size:
        raise UserInputError(
            f"--workdir {run_dir}: dataset {plan.dataset.name!r} has token inputs; attacks "
            "perturb real-valued inputs (images, vectors, signals)."
        )
    from jaxdl.tasks.adversarial import Attack

    attack = Attack.create(input_range=plan.dataset.input_range, **attack_options)
    attack_batch = _attack_batch_fn(plan, attack)
    batch_size = plan.config.data.eval_batch_size
    totals = {"count": 0.0, "clean": 0.0, "robust": 0.0}
    flipped, kept, seen = [], [], 0
    batches = eval_batches(plan.dataset, split, batch_size=batch_size)
    for index, batch in enumerate(batches):
        if num and seen >= num:
            break
        batch = dict(batch)
        real = np.asarray(batch["mask"]) > 0
        if num:  # Only the first `num` real examples count.
            real &= np.cumsum(real) + seen <= num
            batch["mask"] = real.astype(np.float32)
        seen += int(real.sum())
        key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
        sums, adversarial, clean_pred, adversarial_pred = jax.device_get(
            attack_batch(state, batch, key)
        )
        for name in totals:
            totals[name] += float(sums[name])
        for row in np.flatnonzero(real):
            example = (
                batch["input"][row],
                adversarial[row],
                batch["label"][row],
                clean_pred[row],
                adversarial_pred[row],
            )
            fooled = np.all(example[3] == example[2]) and np.any(example[4] != example[2])
            (flipped if fooled else kept).append(example)
            flipped, kept = flipped[:GRID_EXAMPLES], kept[:GRID_EXAMPLES]
    if hasattr(batches, "close"):
        batches.close()
    count = max(totals["count"], 1.0)
    return attack, {
        "step": step,
        "split": split,
        "examples_attacked": seen,
        "clean_accuracy": totals["clean"] / count,
        "robust_accuracy": totals["robust"] / count,
        "input_range": list(plan.dataset.input_range) if plan.dataset.input_range else None,
        "examples": (flipped + kept)[:GRID_EXAMPLES],
    }


def write_grid(examples: list, path: Path, title: str) -> bool:
    """Clean, adversarial and amplified perturbation per column; False for non-image inputs."""
    from jaxdl.engine.plots import pyplot

    if not examples or examples[0][0].ndim != 3 or examples[0][0].shape[-1] not in (1, 3):
        return False
    plt = pyplot()
    fig, axes = plt.subplots(
        3, len(examples), figsize=(1.4 * len(examples) + 0.6, 4.8), squeeze=False
    )
    for column, (clean, adversarial, label, clean_pred, adversarial_pred) in enumerate(examples):
        delta = adversarial - clean
        # The perturbation stretched to the full grey range: 0.5 is unchanged.
        amplified = 0.5 + delta / (2 * max(float(np.abs(delta).max()), 1e-12))
        panels = (
            (clean, f"label {label}\npred {clean_pred}"),
            (adversarial, f"pred {adversarial_pred}"),
            (amplified, f"max |d| {np.abs(delta).max():.3f}"),
        )
        for row, (image, caption) in enumerate(panels):
            axis = axes[row, column]
            shown = image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1)
            axis.imshow(
                shown,
                cmap="gray" if image.shape[-1] == 1 else None,
                vmin=0 if row == 2 else None,
                vmax=1 if row == 2 else None,
            )
            axis.set_title(
                caption,
                fontsize=7,
                color="red" if row == 1 and adversarial_pred != label else "black",
            )
            axis.set_xticks([])
            axis.set_yticks([])
    for row, name in enumerate(("clean", "adversarial", "perturbation")):
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _write_out(out: Path, result: dict, examples: list, title: str) -> list[str]:
    """attack.json (and the grid) into a temporary sibling directory, renamed to `out` whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = [RESULT_FILE]
        (staging / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
        if write_grid(examples, staging / GRID_FILE, title):
            written.append(GRID_FILE)
        os.rename(staging, out)  # Fails rather than replace a directory made meanwhile.
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def cmd_attack(args: argparse.Namespace, rest: list[str]) -> int:
    refuse_overrides("attack", rest)
    _check_options(args)
    run_dir = Path(args.workdir)
    _check_run(run_dir)
    quiet_logs()
    attack_options = {
        "method": args.method,
        "eps": args.eps,
        "norm": args.norm,
        "steps": args.steps,
        "step_size": args.step_size,
        "restarts": args.restarts,
    }
    attack, measured = run_attack(
        run_dir, args.checkpoint, args.split, attack_options, args.num, args.seed
    )
    examples = measured.pop("examples")
    options = {
        "method": args.method,
        "norm": args.norm,
        "eps": args.eps,
        "steps": attack.steps,
        "step_size": attack.step_size * args.eps / attack.eps,  # On [0, 1] pixels.
        "restarts": attack.restarts,
        "seed": args.seed,
        "eps_input_units": attack.eps,
        "step_size_input_units": attack.step_size,
    }
    result = {"workdir": str(run_dir), "checkpoint": args.checkpoint, **options, **measured}
    print(json.dumps(result, indent=2))
    print(
        f"{args.split}: clean accuracy {result['clean_accuracy']:.4f}, robust accuracy "
        f"{result['robust_accuracy']:.4f} ({args.method} {args.norm} eps {args.eps}, "
        f"{result['examples_attacked']} examples)"
    )
    if args.out is not None:
        title = (
            f"{args.method.upper()} {args.norm} eps {args.eps}: clean "
            f"{result['clean_accuracy']:.1%}, robust {result['robust_accuracy']:.1%}"
        )
        written = _write_out(Path(args.out), result, examples, title)
        print(f"wrote {args.out}: {', '.join(written)}")
    return 0


def add_parser(sub: argparse._SubParsersAction, verbose_help: str) -> None:
    """`jaxdl attack`, added to the CLI's parser."""
    parser = _run_parser(
        sub,
        "attack",
        "clean and robust accuracy of a classifier under FGSM or PGD; adversarial images",
        cmd_attack,
        verbose_help,
        "the classifier run to attack",
    )
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--method", default="pgd", help=f"{', '.join(ATTACKS)} (default pgd)")
    parser.add_argument("--eps", type=float, default=0.1, help="radius on [0, 1] pixels")
    parser.add_argument("--norm", default="linf", help=f"{', '.join(NORMS)} (default linf)")
    parser.add_argument("--steps", type=int, default=20, help="PGD steps")
    parser.add_argument(
        "--step_size", type=float, default=0.0, help="PGD step on [0, 1] pixels (0: 2.5*eps/steps)"
    )
    parser.add_argument("--restarts", type=int, default=1, help="PGD random starts (worst kept)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the random starts")
    parser.add_argument("--num", type=int, default=0, help="first N examples (0: the whole split)")
    parser.add_argument("--out", help="new directory: attack.json, adversarial_examples.png")
