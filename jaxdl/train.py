"""`python -m jaxdl.train --config ... --workdir ...`: the same as `jaxdl train`."""

import sys

from jaxdl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
