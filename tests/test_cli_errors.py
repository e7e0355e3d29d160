"""Bad input to the `jaxdl` CLI: a clear message, exit code 2, and the workdir left as it was.

The CLI runs in-process through `jaxdl.cli.main`. One real quick training run (module fixture)
gives the finished workdir that most tests copy into their own tmp_path; every error case fails
before training starts.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from jaxdl.cli import main

EXPERIMENT = str(Path(__file__).resolve().parents[1] / "experiments" / "digits_mlp.py")
QUICK = f"{EXPERIMENT}:quick"


def snapshot(root: Path) -> dict[str, tuple[bytes | str | None, int]]:
    """Every path under `root`: file bytes (None for directories, the target text for symlinks,
    which may dangle) and mtime in ns."""
    entries = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            content = os.readlink(path)
        else:
            content = path.read_bytes() if path.is_file() else None
        entries[str(path.relative_to(root))] = (content, path.lstat().st_mtime_ns)
    return entries


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # Drop anything printed before this call.
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def train_quick(workdir: Path, *overrides: str) -> int:
    """`jaxdl train` of the quick digits MLP, in this process."""
    return main(["train", "--config", QUICK, "--workdir", str(workdir), *overrides])


def assert_error(code: int, err: str, *words: str) -> str:
    """Exit code 2 and one 'jaxdl: error:' message containing every one of `words`."""
    assert code == 2, err
    assert err.startswith("jaxdl: error: "), err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    return err


# 1. Unknown config key.


@pytest.mark.parametrize("fresh", [False, True], ids=["plain", "fresh"])
def test_unknown_config_key_suggests_close_match(capsys, run_dir, tmp_path, fresh):
    before = snapshot(tmp_path)
    argv = ["train", "--config", QUICK, "--workdir", str(run_dir)]
    argv += ["--fresh"] * fresh + ["--config.optimizer.learnin_rate=1"]
    code, _, err = run_cli(capsys, *argv)
    assert_error(
        code,
        err,
        "unknown config field --config.optimizer.learnin_rate",
        "--show_config",
    )
    assert re.search(r"Did you mean: [^?]*\boptimizer\.learning_rate\b", err), err
    assert snapshot(tmp_path) == before


# 2. Wrong value types.


@pytest.mark.parametrize(
    ("override", "field", "expected_type"),
    [
        ("--config.optimizer.learning_rate=abc", "config.optimizer.learning_rate", "float"),
        ("--config.train.num_steps=1.5", "config.train.num_steps", "int"),
    ],
    ids=["float_field", "int_field"],
)
def test_wrong_type_names_field_and_type(capsys, run_dir, tmp_path, override, field, expected_type):
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", "--config", QUICK, "--workdir", str(run_dir), override)
    err = assert_error(code, err, field)
    assert re.search(rf"takes a value of type {expected_type}\b", err), err
    assert snapshot(tmp_path) == before


# 3-5 and 8 (augmentation, monitor): errors found by loop.setup. A finished run with a different
# config is refused before setup, so these run with --fresh on the finished run (the old run must
# not be moved aside) or on a workdir that does not exist yet (it must not be created).


def write_npz_files(data_dir: Path) -> dict[str, Path]:
    data_dir.mkdir()
    x_train = np.zeros((10, 8, 8, 1), np.uint8)
    y_train = np.zeros(10, np.int64)
    x_test = np.zeros((4, 8, 8, 1), np.uint8)
    y_test = np.zeros(4, np.int64)
    paths = {"missing": data_dir / "missing.npz", "mismatch": data_dir / "mismatch.npz"}
    np.savez(paths["missing"], x_train=x_train, y_train=y_train, x_test=x_test)
    np.savez(paths["mismatch"], x_train=x_train, y_train=y_train[:9], x_test=x_test, y_test=y_test)
    return paths


SETUP_ERRORS = {
    "unknown_model": (
        ["--config.model.name=resnt"],
        [
            "unknown model 'resnt'",
            "Did you mean: resnet",
            "Registered models: bert, cnn, gan, gnn, gpt, lenet5, mlp, resnet",
        ],
    ),
    "unknown_dataset": (
        ["--config.data.name=imagenet"],
        ["unknown dataset 'imagenet'", "Registered datasets:", "digits", "mnist", "npz:<path>"],
    ),
    "npz_missing_array": (
        ["--config.data.name=npz:{missing}"],
        [
            "npz file {missing}",
            "lacks array(s) y_test",
            "Required: x_train, y_train, x_test, y_test",
        ],
    ),
    "npz_length_mismatch": (
        ["--config.data.name=npz:{mismatch}"],
        ["npz file {mismatch}", "x_train (10 examples)", "y_train (9 labels)", "differ in length"],
    ),
    "batch_not_divisible": (
        ["--config.data.batch_size=100"],
        ["config.data.batch_size=100", "not divisible by the 8 devices", "96 or 104"],
    ),
    "unknown_augmentation": (
        # config_flags parses a tuple field's value as a Python literal.
        ['--config.data.augment=("twist",)'],
        ["config.data.augment", "unknown augmentation 'twist'", "shift, flip"],
    ),
    "unknown_pipeline": (
        ["--config.data.pipeline=disk"],
        ["data.pipeline='disk'", "auto, memory, stream"],
    ),
    "monitor_not_a_metric": (
        ["--config.train.monitor=f1"],
        [
            "config.train.monitor='f1'",
            "not a validation metric",
            "accuracy, balanced_accuracy, ece, loss, macro_f1",
        ],
    ),
}


@pytest.mark.parametrize("workdir_kind", ["finished_fresh", "new"])
@pytest.mark.parametrize("case", list(SETUP_ERRORS))
def test_setup_error_leaves_workdir_alone(capsys, run_dir, tmp_path, case, workdir_kind):
    npz = {name: str(path) for name, path in write_npz_files(tmp_path / "data").items()}
    overrides, words = SETUP_ERRORS[case]
    if workdir_kind == "finished_fresh":
        target, extra = run_dir, ["--fresh"]
    else:
        target, extra = tmp_path / "new_run", []
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        QUICK,
        "--workdir",
        str(target),
        *extra,
        *(o.format(**npz) for o in overrides),
    )
    assert_error(code, err, *(w.format(**npz) for w in words))
    # Covers the workdir's files and its siblings: nothing moved to run.prev-*, nothing created.
    assert snapshot(tmp_path) == before


# 6. A finished run of a different config.


def test_different_config_refused_then_fresh_moves_old_run_aside(capsys, run_dir, tmp_path):
    changes = ["--config.train.num_steps=2", "--config.schedule.warmup_steps=0"]
    argv = ["train", "--config", QUICK, "--workdir", str(run_dir), *changes]
    original = snapshot(run_dir)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert_error(
        code,
        err,
        f"--workdir {run_dir} holds a run with a different config",
        "train.num_steps: 40 -> 2",
        "schedule.warmup_steps: 5 -> 0",
        "--fresh",
    )
    assert "seed" not in err  # Only the fields that differ are listed.
    assert err.count("\n") == 1, err  # One line: the fields are joined with "; ".
    assert snapshot(tmp_path) == before

    code, out, err = run_cli(capsys, *argv, "--fresh")
    assert code == 0, err
    moved = sorted(tmp_path.glob("run.prev-*"))
    assert len(moved) == 1, moved
    assert f"moved the previous contents of {run_dir} to {moved[0]}" in out
    assert snapshot(moved[0]) == original  # Intact: same names, bytes and mtimes.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2
    assert json.loads((run_dir / "config.json").read_text())["train"]["num_steps"] == 2


# 7. The same command again on the finished run.


def test_rerun_of_finished_run_does_nothing(capsys, run_dir, tmp_path):
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "train", "--config", QUICK, "--workdir", str(run_dir))
    assert code == 0, err
    assert "already holds a finished run of this config" in out
    assert "nothing to do" in out
    assert snapshot(tmp_path) == before


# 8. Other bad input.


def test_non_jaxdl_workdir_refused(capsys, tmp_path):
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("my own files\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", "--config", QUICK, "--workdir", str(workdir))
    assert_error(
        code, err, f"--workdir {workdir} is not empty", "not a jaxdl run", "config.json", "--fresh"
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("spec", "extra_words"),
    [("digits_mpl", ["Did you mean: digits_mlp"]), ("no/such/experiment.py", [])],
    ids=["bare_name_typo", "missing_path"],
)
def test_missing_experiment_lists_experiments(capsys, run_dir, tmp_path, spec, extra_words):
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", "--config", spec, "--workdir", str(run_dir))
    assert_error(
        code,
        err,
        f"--config {spec}: no experiment file",
        "Experiments in",
        "digits_cnn",
        "digits_mlp",
        *extra_words,
    )
    assert snapshot(tmp_path) == before


def test_unknown_variant(capsys, run_dir, tmp_path):
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, "train", "--config", f"{EXPERIMENT}:huge", "--workdir", str(run_dir)
    )
    assert_error(code, err, "unknown experiment variant 'huge'", "quick", "FILE.py:VARIANT")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argument", ["--bogus=1", "stray"])
def test_unknown_extra_argument(capsys, run_dir, tmp_path, argument):
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", "--config", QUICK, "--workdir", str(run_dir), argument)
    assert_error(code, err, f"unexpected argument {argument!r}", "--config.FIELD=VALUE")
    assert snapshot(tmp_path) == before


# Commands that succeed.


def test_list(capsys):
    code, out, err = run_cli(capsys, "list")
    assert code == 0, err
    models = re.search(r"^models:\s+(.*)$", out, re.M)
    datasets = re.search(r"^datasets:\s+(.*)$", out, re.M)
    assert models and datasets, out
    assert {"cnn", "mlp", "lenet5"} <= set(models.group(1).split(", "))
    assert "digits" in datasets.group(1).split(", ")
    assert "digits_mlp" in out


def test_eval_matches_summary(capsys, run_dir, tmp_path):
    summary = json.loads((run_dir / "summary.json").read_text())
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "eval", "--workdir", str(run_dir))
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["split"] == "test"
    assert metrics["step"] == summary["final_metrics_step"]
    assert metrics["accuracy"] == summary["final_metrics"]["test/accuracy"]
    assert snapshot(tmp_path) == before  # Evaluating writes nothing into the run.


def test_the_cli_starts_without_importing_jax():
    """`jaxdl` installs its signal handlers before JAX is imported (cmd_train), and --help and
    bad flags answer at once: no command module may import JAX when the CLI is loaded."""
    import subprocess
    import sys

    check = "import sys, jaxdl.cli; print(sorted(m for m in ('jax', 'optuna') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
