"""The `jaxdl` command: `train` and `list` here; commands that read a saved run (`eval`,
`attention`, `sample`, `export-hf`) in run_commands.py.

    jaxdl train --config experiments/digits_cnn.py --workdir runs/digits_cnn --config.seed=1
    jaxdl train ... --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0
    jaxdl eval --workdir runs/digits_cnn
    jaxdl export-hf --workdir runs/bert --out exported/  # A BERT run for Hugging Face.
    jaxdl list

`python -m jaxdl.train ...` is the same as `jaxdl train ...`. Exit codes: 0 done, 2 bad input,
3 stopped on non-finite values, 75 preempted (run the same command again to resume).
"""

import argparse
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxdl import config as config_lib
from jaxdl import huge_pages, run_commands
from jaxdl.engine.preemption import EXIT_PREEMPTED, Preempted, Preemption
from jaxdl.errors import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    UserInputError,
    close_matches,
    line_in,
    one_line,
)
from jaxdl.run_commands import quiet_logs
from jaxdl.studies import commands as study_commands
from jaxdl.understanding import attack, explain

if TYPE_CHECKING:  # The engine imports JAX: only after Preemption is set up (cmd_train).
    from jaxdl.engine.loop_state import EvaluationCallback

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"


def _resolve_experiment(spec: str) -> tuple[Path, str]:
    """`path.py[:arg]` or a bare experiment name from experiments/, e.g. `digits_cnn:quick`."""
    path_part, _, arg = spec.partition(":")
    path = Path(path_part)
    if path.suffix != ".py":
        path = EXPERIMENTS_DIR / f"{path_part}.py"
    if not path.is_file():
        known = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise UserInputError(
            f"--config {spec}: no experiment file {path}.{close_matches(path.stem, known)} "
            f"Experiments in {EXPERIMENTS_DIR}: {', '.join(known)}."
        )
    return path, arg


def _load_experiment(path: Path, arg: str) -> ml_collections.ConfigDict:
    """Runs the experiment file's get_config; any failure in it becomes one UserInputError.

    The file is Python code run with the user's permissions (README: only run files you trust).
    """
    try:
        spec = importlib.util.spec_from_file_location(f"jaxdl_experiment_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        get_config = getattr(module, "get_config", None)
        if not callable(get_config):
            raise UserInputError(
                f"experiment file {path} defines no get_config() function; it must define "
                "get_config(variant='') returning an ml_collections.ConfigDict."
            )
        config = get_config(arg) if arg else get_config()
    except UserInputError:
        raise  # check_variant's and our own messages are already clear.
    except Exception as error:  # The file is the user's code: any exception is bad input.
        raise UserInputError(
            f"experiment file {path} raised {type(error).__name__}: {one_line(error)}"
            f"{line_in(path, error)}; fix the file, or run with --verbose for the traceback."
        ) from error
    if not isinstance(config, ml_collections.ConfigDict):
        raise UserInputError(
            f"experiment file {path}: get_config() returned {type(config).__name__}, not an "
            "ml_collections.ConfigDict; build it from jaxdl.config.base_config()."
        )
    return config


def _split_overrides(tokens: list[str]) -> list[tuple[str, str | None]]:
    """Pairs (`config.a.b`, value) from `--config.a.b=v` or `--config.a.b v` tokens."""
    pairs, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--config."):
            raise UserInputError(
                f"unexpected argument {token!r}; config fields are set as --config.FIELD=VALUE."
            )
        name, eq, value = token[2:].partition("=")
        if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value, i = tokens[i + 1], i + 1
        pairs.append((name, value if eq or value else None))
        i += 1
    return pairs


def parse_config(spec: str, override_tokens: list[str]) -> ml_collections.ConfigDict:
    """The experiment's config with command-line overrides applied and checked."""
    path, arg = _resolve_experiment(spec)
    known = config_lib.flatten(_load_experiment(path, arg))
    overrides = _split_overrides(override_tokens)
    for name, _ in overrides:
        key = name.removeprefix("config.")
        if key not in known:
            raise UserInputError(
                f"unknown config field --{name}.{close_matches(key, known)} "
                f"Run `jaxdl train --config {spec} --show_config` to see every field."
            )
    argv = ["jaxdl", f"--config={path}{':' + arg if arg else ''}"]
    argv += [f"--{name}={value}" if value is not None else f"--{name}" for name, value in overrides]
    flag_values = flags.FlagValues()
    # sys_argv: config_flags otherwise looks for overrides in sys.argv, not in `argv`.
    config_flags.DEFINE_config_file(
        "config",
        None,
        "experiment file",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=argv,
    )
    try:
        flag_values(argv)
    except flags.IllegalFlagValueError as error:
        key = str(error).split("=")[0].removeprefix("flag --")
        expected = type(known.get(key.removeprefix("config."))).__name__
        raise UserInputError(
            f"{error}. The field {key} takes a value of type {expected}."
        ) from None
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        raise UserInputError(f"bad config override: {error}") from None
    return flag_values.config


def cmd_train(
    args: argparse.Namespace,
    rest: list[str],
    evaluation_callbacks: Sequence["EvaluationCallback"] = (),
) -> int:
    """`jaxdl train`; `evaluation_callbacks` go to `loop.train(on_evaluation=...)`."""
    # From the start (before JAX is imported) SIGTERM and SIGINT stop the run cleanly.
    with Preemption() as preemption:
        try:
            return _train(args, rest, preemption, evaluation_callbacks)
        except Preempted as stop:
            where = f" at step {stop.step}" if stop.step is not None else " before training"
            print(
                f"jaxdl: stopped by {stop.signal_name}{where}; run the same command to resume.",
                file=sys.stderr,
            )
            return EXIT_PREEMPTED


def _distributed_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """`jax.distributed.initialize` arguments from the flags: None for one process, {} to let
    JAX find them (SLURM with several tasks, a Cloud TPU VM with several workers)."""
    given = {
        name: getattr(args, name)
        for name in ("coordinator_address", "num_processes", "process_id")
        if getattr(args, name) is not None
    }
    if not given:
        tasks = os.environ.get("SLURM_NTASKS", os.environ.get("SLURM_NPROCS", "1"))
        slurm = "SLURM_JOB_ID" in os.environ and tasks.isdigit() and int(tasks) > 1
        tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0
        return {} if slurm or tpu_hosts else None
    for name in ("num_processes", "process_id"):
        if name in given:
            value = given[name]
            if not value.isdigit():
                raise UserInputError(f"--{name}={value}: must be a non-negative integer.")
            given[name] = int(value)
    count, index = given.get("num_processes"), given.get("process_id")
    if count is None or count < 1:
        raise UserInputError(
            f"--num_processes={count}: give the number of processes (>= 1) with the "
            "other multi-host flags (--coordinator_address, --process_id)."
        )
    if count > 1 and (index is None or "coordinator_address" not in given):
        missing = "--process_id" if index is None else "--coordinator_address=HOST:PORT"
        raise UserInputError(f"--num_processes={count} needs {missing} too, on every process.")
    if index is not None and not 0 <= index < count:
        raise UserInputError(
            f"--process_id={index} must be in 0..{count - 1} for --num_processes={count}."
        )
    address = given.get("coordinator_address")
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserInputError(
                f"--coordinator_address={address}: write it as HOST:PORT, e.g. 10.0.0.1:1234 "
                "(process 0's address, the same on every process)."
            )
    return None if count == 1 else given


def _start_processes(args: argparse.Namespace, preemption: Preemption) -> None:
    distributed = _distributed_args(args)
    if distributed is None:
        return
    # With several processes JAX's preemption service owns SIGTERM (engine/preemption.py):
    # hand the signals back before it installs its handler.
    preemption.__exit__(None, None, None)
    import jax

    jax.distributed.initialize(**distributed)


def _train(
    args: argparse.Namespace,
    rest: list[str],
    preemption: Preemption,
    evaluation_callbacks: Sequence["EvaluationCallback"] = (),
) -> int:
    from jaxdl.engine import init_from, loop, quality_monitor, sample_quality, workdir
    from jaxdl.engine.faults import FaultPlan

    config = parse_config(args.config, rest)
    if args.show_config:
        print(workdir.config_to_json(config), end="")  # The form saved as config.json.
        return 0
    _start_processes(args, preemption)

    faults = FaultPlan.from_env(dict(os.environ))
    run_dir = Path(args.workdir)
    # Decide about the workdir first (cheap), then check everything else before writing to it.
    state = workdir.inspect_workdir(run_dir, config, fresh=args.fresh)
    if state is workdir.WorkdirState.FINISHED:
        summary = json.loads((run_dir / workdir.SUMMARY_FILE).read_text())
        status = summary.get("status", "completed")
        print(
            f"{run_dir} already holds a finished run of this config ({status}, "
            f"{summary.get('steps')} steps, {json.dumps(summary.get('final_metrics'))}); nothing to do. "
            "Pass --fresh to train again (the old run is moved aside)."
        )
        return EXIT_DIVERGED if status == "diverged" else 0
    quiet_logs()
    import jax
    from jax.experimental import multihost_utils

    plan = loop.setup(config)
    quality = None
    if sample_quality.enabled(config, plan.task.generates_images):
        from jaxdl import feature_classifier

        quality = quality_monitor.SampleQuality(plan, feature_classifier.classifier_dir(config))
    if state is workdir.WorkdirState.NEW:
        init_from.check(plan, run_dir)  # The source run, before the workdir is written to.
        # With several processes (sharing the workdir) process 0 prepares it, the others wait.

        if jax.process_index() == 0:
            moved = workdir.start_new(run_dir, config)
            if moved:
                print(f"moved the previous contents of {run_dir} to {moved}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("jaxdl: workdir ready")
    command = " ".join(["jaxdl train", f"--config {args.config}", f"--workdir {run_dir}", *rest])
    summary = loop.train(
        plan,
        run_dir,
        faults,
        run_info={"command": command},
        preemption=preemption,
        quality=quality,
        on_evaluation=evaluation_callbacks,
    )
    print(json.dumps({k: summary[k] for k in ("final_metrics", "steps", "wall_seconds")}))
    if jax.process_index() == 0:  # The one process that writes them.
        samples = ", samples/" if (run_dir / "samples").is_dir() else ""
        # The task's end-of-run figures (engine/run_report.py), e.g. a classifier's confusion matrix.
        report = "".join(
            f", {p.name}" for p in sorted(run_dir.glob("*.png")) if p.name != "curves.png"
        )
        print(
            f"wrote {run_dir / workdir.SUMMARY_FILE}, curves.png{report}, metrics.jsonl, "
            "tensorboard/" + samples
        )
    if summary["status"] == "diverged":
        print(
            f"jaxdl: training diverged: {json.dumps(summary['nonfinite']['stopped'])}",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    return 0


def cmd_list(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl import data, models, tasks

    experiments = sorted(p for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))
    print("experiments (--config NAME or PATH, add :quick for a smoke run):")
    for path in experiments:
        doc = (path.read_text().split('"""')[1:2] or [""])[0].strip().splitlines()
        print(f"  {path.stem:24s} {doc[0] if doc else ''}")
    print(f"models:     {', '.join(models.MODEL_NAMES)}")
    print(f"datasets:   {', '.join(data.DATASET_NAMES)}, npz:/path/file.npz")
    print(f"pipelines:  {', '.join(data.PIPELINES)} (data.pipeline)")
    print(f"augment:    {', '.join(data.AUGMENTATIONS)} (data.augment, on the device)")
    print(f"tasks:      {', '.join(tasks.TASK_NAMES)}")
    print(f"optimizers: {', '.join(config_lib.OPTIMIZERS)}")
    print(f"schedules:  {', '.join(config_lib.SCHEDULES)}")
    print(
        f"mesh:       axes {', '.join(config_lib.MESH_AXES)} (mesh.AXIS=N, one may be -1); "
        f"modes {', '.join(config_lib.MESH_MODES)} (mesh.mode)"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    verbose_help = "on bad input, also print the traceback"
    parser = argparse.ArgumentParser(prog="jaxdl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or resume) an experiment in a workdir")
    train.add_argument("--config", required=True, help="experiment file or name, e.g. digits_cnn")
    train.add_argument("--workdir", help="where the run's files go (required unless --show_config)")
    train.add_argument(
        "--fresh", action="store_true", help="move an existing run aside, start over"
    )
    train.add_argument("--show_config", action="store_true", help="print the resolved config")
    train.add_argument("--verbose", action="store_true", help=verbose_help)
    multihost = train.add_argument_group(
        "multi-host (all three on every process; on SLURM or a Cloud TPU VM, none: JAX finds them)"
    )
    multihost.add_argument("--coordinator_address", help="HOST:PORT of process 0")
    multihost.add_argument("--num_processes", help="number of processes")
    multihost.add_argument("--process_id", help="this process's index, 0..N-1")
    train.set_defaults(handler=cmd_train)
    run_commands.add_parsers(sub, verbose_help)
    explain.add_parser(sub, verbose_help)
    attack.add_parser(sub, verbose_help)
    study_commands.add_parsers(sub, verbose_help)
    listing = sub.add_parser("list", help="list experiments, models, datasets and options")
    listing.set_defaults(handler=cmd_list)
    return parser


def main(
    argv: list[str] | None = None,
    evaluation_callbacks: Sequence["EvaluationCallback"] = (),
) -> int:
    """The `jaxdl` command on `argv`; its exit code. `evaluation_callbacks` (for callers in
    Python, e.g. a sweep that prunes trials) are passed to `jaxdl train`'s loop; a run one of
    them stops exits 0 with the callback's reason as its status."""
    args, rest = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "train" and not args.workdir and not args.show_config:
            raise UserInputError("jaxdl train needs --workdir DIR (where the run's files go).")
        if args.handler is cmd_train:
            return cmd_train(args, rest, evaluation_callbacks=evaluation_callbacks)
        return args.handler(args, rest)
    except UserInputError as error:
        if getattr(args, "verbose", False):
            traceback.print_exception(error)
        # One line, always: scripts grep for it and a wrapped message hides the field it names.
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"jaxdl: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def entry() -> None:
    """The `jaxdl` command: main() in a process with huge pages on (see jaxdl/huge_pages.py)."""
    huge_pages.reexec_with_huge_pages()
    sys.exit(main())


if __name__ == "__main__":
    entry()
