"""`python -m jaxdl.train --config ... --workdir ...`: the same as `jaxdl train`."""

import sys
from pathlib import Path

from jaxdl import huge_pages
from jaxdl.cli import main


def command(config: str, workdir: Path, *overrides: str) -> list[str]:
    """The argv of a `python -m jaxdl.train` subprocess with this interpreter (the runs that
    ablate, chaos, the scale-out benchmark and the tests start)."""
    return [
        sys.executable,
        "-m",
        "jaxdl.train",
        "--config",
        config,
        "--workdir",
        str(workdir),
        *overrides,
    ]


if __name__ == "__main__":
    huge_pages.reexec_with_huge_pages()  # As the `jaxdl` command does (jaxdl/huge_pages.py).
    sys.exit(main(["train", *sys.argv[1:]]))
