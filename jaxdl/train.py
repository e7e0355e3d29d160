"""`python -m jaxdl.train --config ... --workdir ...`: the same as `jaxdl train`."""

import sys

from jaxdl import huge_pages
from jaxdl.cli import main

if __name__ == "__main__":
    huge_pages.reexec_with_huge_pages()  # As the `jaxdl` command does (jaxdl/huge_pages.py).
    sys.exit(main(["train", *sys.argv[1:]]))
