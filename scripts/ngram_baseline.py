"""The smoothed byte n-gram baseline on stdlib_chars, the figure the character LMs must beat.

python scripts/ngram_baseline.py [--order 5]

Fits jaxdl.text.ngram on the train split's bytes and prints bits per byte on validation and
test. The splits are the dataset builder's own records, read straight from the installed
standard library (no TFDS preparation needed). Each held-out split is scored as one stream, so
a history may reach back into the previous record; the LMs only see bytes of their own window,
which makes this comparison, if anything, generous to the n-gram (cutting histories at record
starts instead costs it about 0.01 bits/char).
"""

import argparse

from jaxdl.data.stdlib_chars_builder import records, split_files, stdlib_root
from jaxdl.text.ngram import NGramModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--order", type=int, default=5, choices=range(1, 9), help="n: histories of n - 1 bytes"
    )
    args = parser.parse_args()
    splits = {name: records(files) for name, files in split_files(stdlib_root()).items()}
    model = NGramModel.fit(splits["train"].ravel(), order=args.order)
    for name in ("validation", "test"):
        bits = model.bits_per_byte(splits[name].ravel())
        print(f"{args.order}-gram on stdlib_chars {name}: {bits:.3f} bits/char")


if __name__ == "__main__":
    main()
