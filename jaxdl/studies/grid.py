"""The grid of an ablation: `--vary FIELD=V1,V2,...` options crossed with `--seeds`.

Values are config override texts, split at the commas that are not inside brackets or quotes, so
`data.augment=(),("shift",)` varies over `()` and `("shift",)`; each is parsed later exactly as
`--config.FIELD=VALUE` is. The baseline cell takes every option's first value.
"""

import dataclasses
import itertools

from jaxdl.errors import UserInputError

OPENERS, CLOSERS = "([{", ")]}"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One combination of the varied fields' values (field -> override text)."""

    index: int
    values: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return ", ".join(f"{field}={value}" for field, value in self.values)

    def overrides(self, seed: int) -> list[str]:
        return [f"--config.{field}={value}" for field, value in self.values] + [
            f"--config.seed={seed}"
        ]


def split_values(text: str) -> list[str]:
    """`a,(b,c),"d,e"` -> ['a', '(b,c)', '"d,e"']: commas at depth 0 outside quotes only."""
    values, current, depth, quote = [], [], 0, None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in OPENERS:
            depth += 1
        elif char in CLOSERS:
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_vary(option: str) -> tuple[str, list[str]]:
    """`FIELD=V1,V2` -> (FIELD, [V1, V2])."""
    field, eq, values_text = option.partition("=")
    field = field.strip().removeprefix("--").removeprefix("config.")
    values = split_values(values_text) if eq else []
    if not field or not values or any(not value for value in values):
        raise UserInputError(
            f"--vary {option!r}: write FIELD=VALUE1,VALUE2,... (e.g. --vary "
            "model.batch_norm=True,False); a value with commas goes in brackets or quotes."
        )
    if len(set(values)) != len(values):
        raise UserInputError(f"--vary {option!r}: a value is listed twice.")
    return field, values


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserInputError(
            f"--seeds {text!r}: give distinct non-negative integers separated by commas, e.g. 0,1,2."
        )
    return seeds


def expand(options: list[str]) -> list[Cell]:
    """The cells of the full grid, the baseline (every first value) first."""
    if not options:
        raise UserInputError("jaxdl ablate needs at least one --vary FIELD=V1,V2.")
    varied = [parse_vary(option) for option in options]
    fields = [field for field, _ in varied]
    if len(set(fields)) != len(fields):
        raise UserInputError(f"--vary: a field is varied twice ({', '.join(fields)}).")
    combos = itertools.product(*(values for _, values in varied))
    return [
        Cell(index, tuple(zip(fields, combo, strict=True))) for index, combo in enumerate(combos)
    ]
