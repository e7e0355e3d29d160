"""`jaxdl` commands that read saved runs: `eval`, `attention`, `sample`, `export-hf`,
`quantize`, `shrink`, `export`, `compare`.

Each writes nothing into the run it reads; bad input raises UserInputError, which the CLI
(cli.py) turns into one line and exit code 2.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from absl import flags
from absl import logging as absl_logging

from jaxdl.errors import UserInputError


def refuse_overrides(command: str, rest: list[str]) -> None:
    """Commands on saved runs take the run's config as it is: --config.* is bad input."""
    if rest:
        raise UserInputError(f"jaxdl {command} takes no config overrides; got {' '.join(rest)}.")


def quiet_logs() -> None:
    # Orbax and JAX log hundreds of INFO lines per run; warnings still show.
    absl_logging.set_verbosity(absl_logging.WARNING)
    # Grain worker processes read absl flags; mark them parsed since we use argparse.
    flags.FLAGS.mark_as_parsed()


def cmd_eval(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.compression import inference
    from jaxdl.engine import run_report

    refuse_overrides("eval", rest)
    out = Path(args.out) if args.out else None
    quiet_logs()
    written = []
    if inference.is_derived_run(Path(args.workdir)):
        if out is not None:
            raise UserInputError(
                f"--out {out}: {args.workdir} is a quantized or shrunk run, which has no report; "
                "leave --out out, or evaluate the run it came from."
            )
        model = inference.load(Path(args.workdir))
        metrics = {"step": model.step, "split": args.split, **model.evaluate(args.split)}
    else:
        # A classifier's metrics come with its classification_report (engine/run_report.py).
        metrics, written = run_report.evaluate_with_report(
            Path(args.workdir), args.checkpoint, args.split, out
        )
    print(json.dumps(metrics, indent=2))
    if written:
        print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    return 0


def cmd_attention(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.engine import attention_maps

    refuse_overrides("attention", rest)
    quiet_logs()
    out = attention_maps.write_attention_maps(
        Path(args.workdir), args.checkpoint, args.images, Path(args.out) if args.out else None
    )
    print(f"wrote {out}")
    return 0


def cmd_export_hf(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.export_hf import export_hf

    refuse_overrides("export-hf", rest)
    quiet_logs()
    step = export_hf(Path(args.workdir), Path(args.out), args.checkpoint)
    print(
        f"wrote step {step} of {args.workdir} to {args.out}: config.json, model.safetensors, tokenizer"
    )
    return 0


def cmd_quantize(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.compression import report
    from jaxdl.compression.quantize_run import quantize_run
    from jaxdl.models.quantized import QuantSpec

    refuse_overrides("quantize", rest)
    spec = QuantSpec(args.scheme, args.mode)  # Checked before anything is read.
    quiet_logs()
    summary = quantize_run(
        Path(args.workdir),
        Path(args.out),
        spec,
        args.calibration_batches,
        args.checkpoint,
        _latency_repeats(args),
    )
    print(report.table(summary["compression"]))
    print(f"wrote {args.out}: summary.json, params.npz, quantization.json, compression.png")
    return 0


def cmd_shrink(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.compression import report
    from jaxdl.compression.shrink_run import shrink_run

    refuse_overrides("shrink", rest)
    quiet_logs()
    summary = shrink_run(
        Path(args.workdir), Path(args.out), args.checkpoint, _latency_repeats(args)
    )
    print(report.table(summary["compression"]))
    kept = ", ".join(f"{name} {k}/{n}" for name, (k, n) in summary["units"].items())
    print(f"units kept: {kept}")
    print(f"wrote {args.out}: summary.json, params.npz, shrink.json, compression.png")
    return 0


def cmd_export(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.export import export_run

    refuse_overrides("export", rest)
    quiet_logs()
    facts = export_run(Path(args.workdir), Path(args.out), args.checkpoint)
    print(
        f"wrote {args.out} ({facts['bytes']:,} bytes): {facts['model']} model of step "
        f"{facts['step']}, inputs {', '.join(facts['inputs'])}, for {', '.join(facts['platforms'])}; "
        "run it with jaxdl.export.load(path)(inputs)"
    )
    return 0


def cmd_compare(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.compression import report
    from jaxdl.compression.compare import compare_runs
    from jaxdl.studies.compare import compare

    if rest:
        raise UserInputError(f"jaxdl compare takes run directories only; got {' '.join(rest)}.")
    out = Path(args.out) if args.out else None
    runs = [Path(run) for run in args.runs]
    if not args.measure:
        print(compare(runs, args.metric, out))
    else:  # The compression report: each classifier measured here.
        quiet_logs()
        print(report.table(compare_runs(runs, out, _latency_repeats(args))))
    if out is not None:
        print(f"wrote {out}")
    return 0


def cmd_sample(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.engine import samples
    from jaxdl.engine.workdir import load_config
    from jaxdl.tasks import task_generates_images

    refuse_overrides("sample", rest)
    quiet_logs()
    task = load_config(Path(args.workdir)).task.name
    if task_generates_images(task):
        return _sample_images(args)
    if task != "language_model":
        raise UserInputError(
            f"{args.workdir} is a {task!r} run; jaxdl sample draws from language_model runs "
            "(text) and vae, gan and diffusion runs (images). Use jaxdl eval for its metrics."
        )
    for flag, value in (("--out", args.out), ("--class", args.label), ("--steps", args.steps)):
        if value is not None:
            raise UserInputError(
                f"{flag} is for runs of generative tasks; {args.workdir} is a text run "
                "(give --prompt instead)."
            )
    if args.prompt is None:
        raise UserInputError(f"{args.workdir} is a language-model run: give --prompt TEXT.")
    options = samples.SampleOptions(
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num=1 if args.num is None else args.num,
    )
    for index, text in enumerate(samples.sample_text(Path(args.workdir), args.checkpoint, options)):
        if options.num > 1:
            print(f"--- sample {index} ---")
        print(args.prompt + text)
    return 0


def _sample_images(args: argparse.Namespace) -> int:
    from jaxdl.engine import image_samples

    if args.prompt is not None:
        raise UserInputError(f"--prompt is for language-model runs; {args.workdir} makes images.")
    if not args.out:
        raise UserInputError("give --out FILE.png (a grid) or --out FILE.npz (the raw samples).")
    options = image_samples.ImageSampleOptions(
        out=Path(args.out),
        num=64 if args.num is None else args.num,
        seed=args.seed,
        label=args.label,
        steps=0 if args.steps is None else args.steps,
    )
    step = image_samples.sample_images(Path(args.workdir), args.checkpoint, options)
    print(f"wrote {options.num} samples of step {step} of {args.workdir} to {options.out}")
    return 0


CHECKPOINT_HELP = "best, latest, or a step number"


def _run_parser(
    sub: argparse._SubParsersAction,
    name: str,
    help_text: str,
    handler: Any,
    verbose_help: str,
    workdir_help: str | None = None,
    out_help: str | None = None,
) -> argparse.ArgumentParser:
    """A command on one saved run: --workdir, --checkpoint, --verbose, and --out when the
    command writes a new file or directory (`out_help`)."""
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("--workdir", required=True, help=workdir_help)
    if out_help:
        parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--checkpoint", default="best", help=CHECKPOINT_HELP)
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    parser.set_defaults(handler=handler)
    return parser


def _add_latency_repeats(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--latency_repeats", type=int, default=20, help=help_text)


def _latency_repeats(args: argparse.Namespace) -> int:
    if args.latency_repeats < 1:
        raise UserInputError(f"--latency_repeats {args.latency_repeats}: give at least 1.")
    return args.latency_repeats


def add_parsers(sub: argparse._SubParsersAction, verbose_help: str) -> None:
    """The subcommands above, added to the CLI's parser."""
    evaluate = _run_parser(sub, "eval", "evaluate a run's checkpoint", cmd_eval, verbose_help)
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"))
    evaluate.add_argument(
        "--out",
        help="new or empty directory for a classifier's report: confusion_matrix.png, "
        "reliability.png and report.json",
    )
    attention = _run_parser(
        sub,
        "attention",
        "write a PNG of a Transformer's attention maps for test images",
        cmd_attention,
        verbose_help,
    )
    attention.add_argument("--images", type=int, default=6, help="how many test images")
    attention.add_argument("--out", help="PNG file to write (default WORKDIR/attention_maps.png)")
    new_dir = "new (or empty) directory to write"
    _run_parser(
        sub,
        "export-hf",
        "write a BERT run as a Hugging Face checkpoint directory",
        cmd_export_hf,
        verbose_help,
        out_help=new_dir,
    )
    quantize = _run_parser(
        sub,
        "quantize",
        "post-training quantization of a classifier run into a new run",
        cmd_quantize,
        verbose_help,
        "the float run to quantize",
        new_dir,
    )
    quantize.add_argument("--scheme", default="int8", help="int8 (default), int4 or fp8")
    quantize.add_argument(
        "--mode",
        default="static",
        help="static (activations calibrated on training batches; default), dynamic, or weight "
        "(weights only)",
    )
    quantize.add_argument(
        "--calibration_batches", type=int, default=8, help="static mode: training batches"
    )
    _add_latency_repeats(quantize, "timed passes per latency (median)")
    shrink = _run_parser(
        sub,
        "shrink",
        "remove the pruned units of a prune.structure=units run (a new run)",
        cmd_shrink,
        verbose_help,
        "the units-pruned run",
        new_dir,
    )
    _add_latency_repeats(shrink, "timed passes per latency (median)")
    _run_parser(
        sub,
        "export",
        "serialize a classifier's inference function (jax.export, StableHLO)",
        cmd_export,
        verbose_help,
        "a classifier or quantized run",
        "new file to write, e.g. model.bin",
    )
    compare = sub.add_parser(
        "compare",
        help="runs side by side: final metrics, steps/s, differing config fields, curves",
    )
    compare.add_argument("runs", nargs="+", help="run directories")
    compare.add_argument(
        "--metric", default="val/loss", help="the curve to overlay: SPLIT/NAME, e.g. val/accuracy"
    )
    compare.add_argument(
        "--out", help="write a PNG here (the curves; with --measure, accuracy vs size)"
    )
    compare.add_argument(
        "--measure",
        action="store_true",
        help="classifiers: measure test accuracy, parameter bytes, non-zero parameters and CPU "
        "latency here (the compression report)",
    )
    _add_latency_repeats(compare, "--measure: timed passes per latency")
    compare.add_argument("--verbose", action="store_true", help=verbose_help)
    compare.set_defaults(handler=cmd_compare)
    sample = _run_parser(
        sub,
        "sample",
        "generate text from a language-model run, or images from a generative one",
        cmd_sample,
        verbose_help,
    )
    sample.add_argument("--prompt", help="text to continue (UTF-8 bytes; language models)")
    sample.add_argument("--out", help="images: FILE.png (a grid) or FILE.npz (raw samples)")
    sample.add_argument("--class", dest="label", type=int, help="images: this class only")
    sample.add_argument("--steps", type=int, help="images: the sampler's steps (diffusion)")
    sample.add_argument("--max_new_tokens", type=int, default=200)
    sample.add_argument("--seed", type=int, default=0, help="PRNG seed: fixes the sample")
    sample.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    sample.add_argument("--top_k", type=int, default=0, help="0: no top-k filter")
    sample.add_argument("--top_p", type=float, default=1.0, help="1: no nucleus filter")
    sample.add_argument(
        "--num", type=int, default=None, help="how many samples (default 1 text, 64 images)"
    )
