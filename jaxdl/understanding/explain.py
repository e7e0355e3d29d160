"""`jaxdl explain`: attribution maps and feature pictures of a saved classifier run.

It writes FILE.png and FILE.npz (the raw arrays) beside it, never into the run, and refuses an
existing file. Bad input raises UserInputError (exit code 2) before anything is written.
"""

import argparse
from pathlib import Path

from jaxdl.errors import UserInputError, close_matches

GRADIENT_METHODS = ("saliency", "gradxinput", "smoothgrad", "ig", "gradcam")
ATTRIBUTION_METHODS = (*GRADIENT_METHODS, "rollout")
FEATURE_METHODS = ("filters", "embedding", "neighbors")
METHODS = (*ATTRIBUTION_METHODS, *FEATURE_METHODS)
SIGNED = ("gradxinput", "ig")
BASELINES = ("zeros", "mean")
# attribution.QUADRATURES, named here so that the CLI starts without importing JAX.
QUADRATURES = ("adaptive", "uniform")
TARGETS = ("pred", "label")
# EMBEDDINGS, named here so that the CLI starts without importing scikit-learn.
EMBEDDINGS = ("pca", "tsne")


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before the run is read."""
    if args.method not in METHODS:
        raise UserInputError(
            f"--method {args.method!r} is unknown.{close_matches(args.method, METHODS)} "
            f"Choose one of: {', '.join(METHODS)}."
        )
    out = Path(args.out)
    if out.suffix != ".png":
        raise UserInputError(f"--out {out}: give a .png file (the .npz is written beside it).")
    for path in (out, out.with_suffix(".npz")):
        if path.exists():
            raise UserInputError(f"{path} exists; pass --out with a new file name (it is kept).")
    for flag, value, allowed in (
        ("--baseline", args.baseline, BASELINES),
        ("--target", args.target, TARGETS),
        ("--embedding", args.embedding, EMBEDDINGS),
        ("--quadrature", args.quadrature, QUADRATURES),
    ):
        if value not in allowed:
            raise UserInputError(f"{flag} {value!r}: choose one of {', '.join(allowed)}.")
    for flag, value in (
        ("--num", args.num),
        ("--samples", args.samples),
        ("--steps", args.steps),
        ("--neighbors", args.neighbors),
    ):
        if value is not None and value < 1:
            raise UserInputError(f"{flag} {value}: give at least 1.")
    if not 0 <= args.tolerance < 1:
        raise UserInputError(
            f"--tolerance {args.tolerance}: give the completeness error allowed as a fraction in "
            "[0, 1) (0.01 is 1%; 0 never refines)."
        )
    if args.max_steps is not None and args.max_steps < args.steps:
        raise UserInputError(
            f"--max-steps {args.max_steps} is below --steps {args.steps}; give at least --steps."
        )
    if not args.noise >= 0:
        raise UserInputError(f"--noise {args.noise}: give a fraction of the input range >= 0.")
    if args.layer is not None and args.method != "gradcam":
        raise UserInputError(f"--layer is for --method gradcam, not {args.method}.")


def cmd_explain(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.run_commands import quiet_logs, refuse_overrides
    from jaxdl.understanding.explain_run import explain

    refuse_overrides("explain", rest)
    check_args(args)  # Before the run (and JAX) is loaded.
    quiet_logs()
    print(explain(args))
    return 0


def add_parser(sub: argparse._SubParsersAction, verbose_help: str) -> None:
    """`jaxdl explain`, added to the CLI's parser."""
    parser = sub.add_parser(
        "explain", help="attribution maps and feature pictures of a classifier run"
    )
    parser.add_argument("--workdir", required=True, help="a classifier run")
    parser.add_argument("--checkpoint", default="best", help="best, latest, or a step number")
    parser.add_argument("--method", required=True, help=", ".join(METHODS))
    parser.add_argument("--out", required=True, help="new FILE.png; FILE.npz holds the arrays")
    parser.add_argument("--split", default="test", help="the examples' split (default test)")
    parser.add_argument(
        "--num", type=int, help="examples shown (default 16; embedding: all of the split)"
    )
    parser.add_argument("--target", default="pred", help="the class explained: pred or label")
    parser.add_argument("--samples", type=int, default=50, help="smoothgrad: noisy copies")
    parser.add_argument(
        "--noise", type=float, default=0.15, help="smoothgrad: noise std / input range"
    )
    parser.add_argument("--baseline", default="zeros", help="ig: zeros or mean (train mean)")
    parser.add_argument("--steps", type=int, default=128, help="ig: trapezoid intervals")
    parser.add_argument(
        "--quadrature",
        default="adaptive",
        help="ig: adaptive (intervals bisected where the gradient changes) or uniform",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="ig: examples whose completeness error is above this fraction are redone with "
        "twice the steps (0: never)",
    )
    parser.add_argument(
        "--max-steps", type=int, help="ig: the most steps refinement goes to (default 8 x --steps)"
    )
    parser.add_argument("--layer", help="gradcam: a convolution's path (default: the last)")
    parser.add_argument("--embedding", default="pca", help="embedding: pca or tsne")
    parser.add_argument("--neighbors", type=int, default=5, help="neighbors: k per query")
    parser.add_argument("--seed", type=int, default=0, help="smoothgrad noise, t-SNE")
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    parser.set_defaults(handler=cmd_explain)
