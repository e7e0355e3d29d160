"""The `jaxdl` commands that run many runs: `ablate` (ablate.py)."""

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
