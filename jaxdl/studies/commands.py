"""The `jaxdl` commands that run many runs: `ablate` (ablate.py) and `sweep` (sweep.py)."""

import argparse
import sys
from pathlib import Path

from jaxdl.errors import UserInputError


def cmd_ablate(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.cli import parse_config  # The CLI's own resolution of a config and overrides.
    from jaxdl.engine.setup import setup
    from jaxdl.run_commands import quiet_logs
    from jaxdl.studies.ablate import ablate, table

    if rest:
        raise UserInputError(
            f"jaxdl ablate: unexpected {' '.join(rest)}; vary fields with --vary FIELD=V1,V2."
        )
    quiet_logs()
    rows, failed = ablate(
        args.config,
        args.vary or [],
        args.seeds,
        Path(args.dir),
        args.workers,
        args.metric,
        # Fields and values, as `jaxdl train` checks them before it writes anything.
        lambda overrides: setup(parse_config(args.config, overrides)),
    )

    print(table(rows, args.metric))
    print(f"wrote {args.dir}/ablation.md, ablation.json, ablation.png")
    if failed:
        print(
            f"jaxdl: {failed} run(s) failed; their logs are in {args.dir}/cells/*/seed_*.log. "
            "Run the same command again to retry them.",
            file=sys.stderr,
        )
        return 1
    return 0


def optuna_quiet() -> None:
    """Optuna logs a line per study and trial; the sweep prints its own."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def cmd_sweep(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxdl.cli import parse_config
    from jaxdl.engine.preemption import EXIT_PREEMPTED
    from jaxdl.engine.setup import setup
    from jaxdl.run_commands import quiet_logs
    from jaxdl.studies import space as space_lib
    from jaxdl.studies import study_store, sweep_definition, sweep_report
    from jaxdl.studies import sweep as sweep_lib

    quiet_logs()
    optuna_quiet()
    out = Path(args.dir)
    if args.report:
        return _sweep_report(args, rest, out)
    if not args.config or args.trials is None:
        raise UserInputError(
            "jaxdl sweep needs --config EXPERIMENT and --trials N (or --dir D --report)."
        )
    if args.trials < 1 or args.workers < 1:
        raise UserInputError(f"--trials {args.trials} --workers {args.workers}: give 1 or more.")
    space = space_lib.load(args.space, args.param or [])
    base = parse_config(args.config, rest)  # The overrides every trial shares.
    definition = sweep_definition.make_definition(
        args.config, rest, space, base, args.sampler, args.pruner, args.seed, args.study or out.name
    )
    space_lib.check(space, lambda overrides: setup(parse_config(args.config, [*rest, *overrides])))
    trials = args.trials
    if args.sampler == "grid" and trials > sweep_definition.grid_size(space.grid()):
        trials = sweep_definition.grid_size(space.grid())
        print(f"jaxdl sweep: the grid has {trials} points; running {trials} trials")
    url = args.storage or study_store.default_url(out)
    continuing = sweep_definition.check_dir(out, definition, url)
    sweep = sweep_lib.Sweep(definition, space, url, out, trials)
    if not continuing:
        sweep_definition.write_record(out, definition, url)
    print(
        f"jaxdl sweep: study {definition.study!r} in {study_store.masked(url)}, {trials} trials, "
        f"{args.workers} worker(s); trials in {out}/trials/"
    )
    sweep.run(args.workers)
    print(sweep_report.write_report(sweep.study, definition, out))
    if sweep.stopping.is_set():
        print("jaxdl: sweep stopped; run the same command to continue it.", file=sys.stderr)
        return EXIT_PREEMPTED
    if sweep.failed:
        print(f"jaxdl: {sweep.failed} trial(s) failed; see their logs.", file=sys.stderr)
        return 1
    return 0


def _sweep_report(args: argparse.Namespace, rest: list[str], out: Path) -> int:
    import optuna

    from jaxdl.studies import study_store, sweep_definition, sweep_report

    if rest or args.space or args.param or args.trials is not None:
        raise UserInputError(
            "jaxdl sweep --report takes --dir (and --storage if the study is not in it) only."
        )
    definition = sweep_definition.read_definition(out)
    url = args.storage or sweep_definition.read_record(out)["storage"]
    if url != study_store.masked(url) or "***" in url:
        raise UserInputError(f"--dir {out}: its storage has a password; give it with --storage.")
    try:
        study = optuna.load_study(
            study_name=definition.study, storage=study_store.open_storage(url)
        )
    except KeyError:
        raise UserInputError(
            f"no study {definition.study!r} in {study_store.masked(url)}."
        ) from None
    print(sweep_report.write_report(study, definition, out))
    return 0


def add_parsers(sub: argparse._SubParsersAction, verbose_help: str) -> None:
    ablate = sub.add_parser(
        "ablate", help="train a grid of config variations over seeds; mean ± std per cell"
    )
    ablate.add_argument("--config", required=True, help="experiment file or name")
    ablate.add_argument(
        "--vary",
        action="append",
        metavar="FIELD=V1,V2",
        help="a config field and its values (repeat for a grid; the first values are the baseline)",
    )
    ablate.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0,1,2")
    ablate.add_argument("--dir", required=True, help="where the runs and the report go")
    ablate.add_argument("--workers", type=int, default=1, help="runs at once")
    ablate.add_argument("--metric", default="test/accuracy", help="the final metric to compare")
    ablate.add_argument("--verbose", action="store_true", help=verbose_help)
    ablate.set_defaults(handler=cmd_ablate)

    sweep = sub.add_parser(
        "sweep",
        help="an Optuna hyperparameter search whose trials are jaxdl runs (resumable, shareable)",
    )
    sweep.add_argument("--config", help="experiment file or name")
    sweep.add_argument("--space", help="a Python file with space(trial) -> {FIELD: value}")
    sweep.add_argument(
        "--param",
        action="append",
        metavar="FIELD=KIND(ARGS)",
        help="loguniform(a,b), uniform(a,b), int(a,b[,step]) or choice(v1,v2,...); repeatable",
    )
    sweep.add_argument("--trials", type=int, help="trials in the study (all workers, all machines)")
    sweep.add_argument("--dir", required=True, help="where the trials, study and report go")
    sweep.add_argument("--workers", type=int, default=1, help="trials at once on this machine")
    sweep.add_argument(
        "--storage", help="Optuna storage URL (default sqlite:///DIR/study.db); postgresql://..."
    )
    sweep.add_argument("--sampler", default="tpe", help="tpe, random or grid")
    sweep.add_argument("--pruner", default="median", help="median, hyperband or none")
    sweep.add_argument("--seed", type=int, default=0, help="the samplers' seed")
    sweep.add_argument("--study", help="the study's name (default: the --dir folder's name)")
    sweep.add_argument("--report", action="store_true", help="only write the report of --dir")
    sweep.add_argument("--verbose", action="store_true", help=verbose_help)
    sweep.set_defaults(handler=cmd_sweep)
