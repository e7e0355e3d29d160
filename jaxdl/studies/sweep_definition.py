"""What makes a sweep this sweep, and the Optuna pieces built from it.

The definition (experiment, fixed overrides, search space, sampler, pruner, seed, objective) is
recorded in DIR/sweep.json and in the study itself, so a continued or joined sweep is checked
against the one that started it. The sampler and the pruner are rebuilt from it wherever they
are needed: in the sweep's workers and in every trial's process (trial.py).
"""

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import ml_collections
import optuna

from jaxdl.errors import UserInputError
from jaxdl.studies import space as space_lib
from jaxdl.studies import study_store

SWEEP_FILE = "sweep.json"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
OVERRIDES_ATTR = "jaxdl_overrides"
RESULT_ATTR = "jaxdl_result"


@dataclasses.dataclass(frozen=True)
class Definition:
    """What makes a sweep this sweep: recorded in DIR/sweep.json and in the study."""

    config: str
    fixed: tuple[str, ...]
    space: dict[str, Any]
    sampler: str
    pruner: str
    seed: int
    study: str
    metric: str
    direction: str
    num_steps: int
    eval_every: int

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # Tuples as lists, as read back.


def make_definition(
    config_spec: str,
    fixed: list[str],
    space: space_lib.Space,
    base: ml_collections.ConfigDict,
    sampler: str,
    pruner: str,
    seed: int,
    study: str,
) -> Definition:
    if sampler not in SAMPLERS:
        raise UserInputError(f"--sampler {sampler}: choose one of {', '.join(SAMPLERS)}.")
    if pruner not in PRUNERS:
        raise UserInputError(f"--pruner {pruner}: choose one of {', '.join(PRUNERS)}.")
    train = base.train
    direction = "maximize" if train.monitor_mode == "max" else "minimize"
    return Definition(
        config_spec,
        tuple(fixed),
        space.identity(),
        sampler,
        pruner,
        seed,
        study,
        train.monitor,
        direction,
        train.num_steps,
        train.eval_every,
    )


def check_dir(out: Path, definition: Definition, url: str) -> bool:
    """True if `out` already holds this sweep; refuses a directory that holds anything else."""
    path = out / SWEEP_FILE
    if path.is_file():
        saved = read_record(out)
        if saved.get("definition") != definition.to_json():
            differing = sorted(
                key
                for key, value in definition.to_json().items()
                if saved.get("definition", {}).get(key) != value
            )
            raise UserInputError(
                f"--dir {out} holds another sweep (it differs in {', '.join(differing)}); run "
                "the command that started it to continue it, or give a new --dir."
            )
        if saved.get("storage") != study_store.masked(url):
            raise UserInputError(
                f"--dir {out} keeps its study in {saved.get('storage')}; give that --storage."
            )
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"--dir {out} exists and holds no sweep; give a new or empty one.")
    return False


def write_record(out: Path, definition: Definition, url: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"definition": definition.to_json(), "storage": study_store.masked(url)}
    (out / SWEEP_FILE).write_text(json.dumps(record, indent=2) + "\n")


def read_record(out: Path) -> dict[str, Any]:
    path = out / SWEEP_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"--dir {out} holds no sweep ({path} is missing).") from None
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} cannot be read ({error}); give another --dir.") from None


def read_definition(out: Path) -> Definition:
    saved = read_record(out)["definition"]
    return Definition(**{**saved, "fixed": tuple(saved["fixed"])})


def make_pruner(definition: Definition) -> optuna.pruners.BasePruner:
    """The pruner, the same in the sweep and in every trial process (trial.py)."""
    if definition.pruner == "median":
        # No verdict before 4 trials have finished, nor in a run's first quarter: early
        # validation values are noisy and every learning rate looks alike at warm-up.
        return optuna.pruners.MedianPruner(
            n_startup_trials=4, n_warmup_steps=definition.num_steps // 4
        )
    if definition.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=definition.eval_every,
            max_resource=definition.num_steps,
            reduction_factor=3,
        )
    return optuna.pruners.NopPruner()


def make_sampler(
    definition: Definition, number: int, trials: int, grid: dict[str, list[Any]] | None
) -> optuna.samplers.BaseSampler:
    """A sampler seeded for the trial that takes `number`: the draws do not depend on when a
    process started, only on the study's history."""
    seed = (definition.seed * 1_000_003 + number) % 2**32
    if definition.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if definition.sampler == "grid":
        # The seed shuffles the grid itself: the same for every trial, or points repeat.
        return optuna.samplers.GridSampler(grid, seed=definition.seed)
    # Random draws for the first half of a short sweep (up to Optuna's default of 10), then TPE.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(4, trials // 2)))


def grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(values) for values in grid.values())


def open_study(storage: optuna.storages.BaseStorage, definition: Definition) -> optuna.study.Study:
    """Creates the study or joins it; a study of the same name with another definition exits 2."""
    study = optuna.create_study(
        storage=storage,
        study_name=definition.study,
        direction=definition.direction,
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("jaxdl_sweep")
    if recorded is None:
        study.set_user_attr("jaxdl_sweep", definition.to_json())
    elif recorded != definition.to_json():
        differing = sorted(k for k, v in definition.to_json().items() if recorded.get(k) != v)
        raise UserInputError(
            f"the study {definition.study!r} in this storage is another sweep (it differs in "
            f"{', '.join(differing)}); run the command that started it, or give another "
            "--study or --dir."
        )
    return study
