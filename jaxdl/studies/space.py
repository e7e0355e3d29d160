"""The search space of a sweep: a space file's `space(trial)` and `--param` shorthands.

A space file is Python: `def space(trial) -> dict` returns config overrides `{FIELD: value}`,
drawing the values with Optuna's `trial.suggest_*` under names of its own choosing (those names
are the study's parameters). It may define `GRID = {name: [values]}` for `--sampler grid`.

A shorthand `--param FIELD=KIND(ARGS)` draws one field, under the field's name:
    loguniform(a,b)  uniform(a,b)  int(a,b)  int(a,b,step)  choice(v1,v2,...)
A choice's values are override texts, exactly as `--config.FIELD=VALUE` takes them, so tuples
work: `model.hidden_sizes=choice((64,64),(128,128))` (Optuna stores the texts).
"""

import dataclasses
import hashlib
import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxdl.errors import UserInputError, line_in, one_line
from jaxdl.studies.grid import split_values

KINDS = ("loguniform", "uniform", "int", "choice")
_SHORTHAND = re.compile(r"^\s*(?:--)?(?:config\.)?([\w.]+)\s*=\s*(\w+)\((.*)\)\s*$", re.DOTALL)


def override_text(value: Any) -> str:
    """A Python value as `--config.FIELD=` takes it: strings bare, everything else as repr."""
    return value if isinstance(value, str) else repr(value)


@dataclasses.dataclass(frozen=True)
class Param:
    """One `--param` shorthand."""

    field: str
    kind: str
    args: tuple[Any, ...]
    text: str

    def suggest(self, trial: Any) -> str:
        """Draws the value from an Optuna trial; returns its override text."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.field, list(self.args))
        if self.kind == "int":
            low, high, step = self.args
            return repr(trial.suggest_int(self.field, low, high, step=step))
        low, high = self.args
        return repr(trial.suggest_float(self.field, low, high, log=self.kind == "loguniform"))

    def grid_values(self) -> list[Any]:
        if self.kind == "choice":
            return list(self.args)
        if self.kind == "int":
            low, high, step = self.args
            return list(range(low, high + 1, step))
        raise UserInputError(
            f"--param {self.text}: --sampler grid needs choice(...) or int(...) values, not "
            f"{self.kind}; list the values with choice(...) or use --sampler tpe or random."
        )

    def extremes(self) -> list[str]:
        """Override texts at the edges of the range (every value of a choice): checked up front."""
        if self.kind == "choice":
            return list(self.args)
        return [repr(self.args[0]), repr(self.args[1])]


def _numbers(param: str, kind: str, texts: list[str]) -> list[float]:
    try:
        return [float(text) for text in texts]
    except ValueError:
        raise UserInputError(
            f"--param {param}: {kind}(...) takes numbers, got {', '.join(texts)}."
        ) from None


def parse_param(text: str) -> Param:
    """`optimizer.learning_rate=loguniform(1e-4,1e-2)` -> Param; bad text -> UserInputError."""
    match = _SHORTHAND.match(text)
    usage = (
        "write FIELD=loguniform(a,b), uniform(a,b), int(a,b[,step]) or choice(v1,v2,...), "
        "e.g. --param optimizer.learning_rate=loguniform(1e-4,1e-2)"
    )
    if not match:
        raise UserInputError(f"--param {text!r}: {usage}.")
    field, kind, inner = match.groups()
    if kind not in KINDS:
        raise UserInputError(f"--param {text!r}: unknown kind {kind!r}; {usage}.")
    values = split_values(inner)
    if kind == "choice":
        if not values or any(not value for value in values) or len(set(values)) != len(values):
            raise UserInputError(
                f"--param {text!r}: choice(...) needs distinct, non-empty values; a value with "
                "commas goes in brackets or quotes."
            )
        return Param(field, kind, tuple(values), text)
    if kind == "int":
        numbers = _numbers(text, kind, values)
        if len(numbers) not in (2, 3) or any(n != int(n) for n in numbers):
            raise UserInputError(f"--param {text!r}: int(a,b) or int(a,b,step) with integers.")
        low, high, step = (*map(int, numbers), 1)[:3]
        if low > high or step < 1:
            raise UserInputError(f"--param {text!r}: needs low <= high and step >= 1.")
        return Param(field, kind, (low, high, step), text)
    numbers = _numbers(text, kind, values)
    if len(numbers) != 2 or not all(math.isfinite(n) for n in numbers):
        raise UserInputError(f"--param {text!r}: {kind}(low,high) with two finite numbers.")
    low, high = numbers
    if low >= high or (kind == "loguniform" and low <= 0):
        need = "0 < low < high" if kind == "loguniform" else "low < high"
        raise UserInputError(f"--param {text!r}: {kind} needs {need}.")
    return Param(field, kind, (low, high), text)


@dataclasses.dataclass
class Space:
    """A space file's function and the shorthands; `overrides(trial)` draws one trial's values."""

    params: list[Param]
    file: Path | None = None
    function: Callable[[Any], Any] | None = None
    file_grid: dict[str, list[Any]] | None = None

    def overrides(self, trial: Any) -> list[str]:
        """`--config.FIELD=VALUE` for every drawn field: the file's first, then the shorthands."""
        drawn: dict[str, str] = {}
        if self.function is not None:
            drawn.update(self._call_file(trial))
        for param in self.params:
            if param.field in drawn:
                raise UserInputError(
                    f"--param {param.text}: the space file {self.file} sets {param.field} too; "
                    "draw each field in one place."
                )
            drawn[param.field] = param.suggest(trial)
        return [f"--config.{field}={value}" for field, value in drawn.items()]

    def _call_file(self, trial: Any) -> dict[str, str]:
        try:
            result = self.function(trial)
        except UserInputError:
            raise
        except Exception as error:  # The space file is the user's code.
            raise UserInputError(
                f"space file {self.file}: space(trial) raised {type(error).__name__}: "
                f"{one_line(error)}{line_in(self.file, error)}; fix the file."
            ) from error
        if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
            raise UserInputError(
                f"space file {self.file}: space(trial) must return a dict of config overrides "
                f"{{'optimizer.learning_rate': value, ...}}, not {type(result).__name__}."
            )
        return {
            key.removeprefix("--").removeprefix("config."): override_text(value)
            for key, value in result.items()
        }

    def grid(self) -> dict[str, list[Any]]:
        """GridSampler's search space: the file's GRID plus every shorthand's values."""
        if self.function is not None and self.file_grid is None:
            raise UserInputError(
                f"--sampler grid: the space file {self.file} defines no GRID = {{name: [values]}} "
                "for its parameters; add one, or use --sampler tpe or random."
            )
        space = dict(self.file_grid or {})
        space.update({param.field: param.grid_values() for param in self.params})
        return space

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same search (recorded with the study)."""
        digest = hashlib.sha256(self.file.read_bytes()).hexdigest()[:16] if self.file else None
        return {
            # The name, not the path: machines sharing a study keep the file in other places.
            "space_file": self.file.name if self.file else None,
            "space_sha256": digest,
            "params": [param.text for param in self.params],
        }


def load(space_file: str | None, shorthands: list[str]) -> Space:
    """The space from `--space FILE` and `--param` options; at least one must be given."""
    params = [parse_param(text) for text in shorthands]
    fields = [param.field for param in params]
    if len(set(fields)) != len(fields):
        raise UserInputError(f"--param: a field is given twice ({', '.join(fields)}).")
    if space_file is None:
        if not params:
            raise UserInputError(
                "jaxdl sweep needs a search space: --space FILE.py (a space(trial) function) "
                "or --param FIELD=loguniform(a,b) (repeatable)."
            )
        return Space(params)
    path = Path(space_file)
    if path.suffix != ".py" or not path.is_file():
        raise UserInputError(f"--space {space_file}: no such Python file (give a .py path).")
    try:
        spec = importlib.util.spec_from_file_location(f"jaxdl_space_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as error:
        raise UserInputError(
            f"space file {path} raised {type(error).__name__}: {one_line(error)}"
            f"{line_in(path, error)}; fix the file."
        ) from error
    function = getattr(module, "space", None)
    if not callable(function):
        raise UserInputError(
            f"space file {path} defines no space(trial) function; it must define space(trial) "
            "returning a dict of config overrides."
        )
    file_grid = getattr(module, "GRID", None)
    if file_grid is not None and not (
        isinstance(file_grid, dict) and all(isinstance(v, list | tuple) for v in file_grid.values())
    ):
        raise UserInputError(f"space file {path}: GRID must be a dict {{name: [values]}}.")
    grid = {name: list(values) for name, values in file_grid.items()} if file_grid else None
    return Space(params, path, function, grid)


def check(space: Space, check_overrides: Callable[[list[str]], None], draws: int = 3) -> None:
    """Resolves configs from the space before any trial: every shorthand's range edges and
    choices, and `draws` random draws of the whole space (the space file's included)."""
    import optuna

    def checked(overrides: list[str], where: str) -> None:
        try:
            check_overrides(overrides)
        except UserInputError as error:
            raise UserInputError(f"search space, {where}: {error}") from None

    for param in space.params:
        for text in param.extremes():
            checked([f"--config.{param.field}={text}"], f"--param {param.text}")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(draws):
        trial = study.ask()
        overrides = space.overrides(trial)
        checked(overrides, f"drawn {' '.join(overrides)}")
        study.tell(trial, 0.0)
