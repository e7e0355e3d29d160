"""Untrusted input to the `jaxdl` CLI: experiment files, config values, workdirs and data files.

Every case must exit 2 with exactly one `jaxdl: error:` line that names the field or file, show
no traceback (unless --verbose), and leave tmp_path (workdir, siblings, data files) unchanged.
"""

import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxdl.engine import workdir
from jaxdl.errors import UserInputError
from tests.test_cli_errors import QUICK, assert_error, run_cli, snapshot


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert_error(code, err, *words)
    assert err.count("\n") == 1, err
    assert "Traceback" not in err, err


def train_fails(capsys, root: Path, target: Path, *args: str, words: tuple[str, ...]) -> None:
    """`jaxdl train` on `target` exits 2 with one line naming `words`; `root` is unchanged."""
    before = snapshot(root)
    argv = ["train", "--config", QUICK, "--workdir", str(target), *args]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *words)
    assert snapshot(root) == before


def workdir_args(kind: str, run_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The finished run as is, the finished run with --fresh (must not be moved), or a new dir."""
    if kind == "new":
        return tmp_path / "new_run", []
    return run_dir, ["--fresh"] if kind == "finished_fresh" else []


# --verbose.


@pytest.mark.parametrize("command", ["train", "eval"])
def test_verbose_adds_traceback_before_the_one_line(capsys, tmp_path, command):
    missing = tmp_path / "missing"
    argv = [command, "--workdir", str(missing), "--verbose"]
    if command == "train":
        argv += ["--config", QUICK, "--config.optimizer.learning_rate=nan"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" in err and "UserInputError" in err, err
    assert err.splitlines()[-1].startswith("jaxdl: error: "), err
    assert not missing.exists()


# Experiment files are code: anything they raise is reported as one line naming the file.

BAD_EXPERIMENTS = {
    "raises_on_import": ("x = 1\ny = x / 0\n", ["ZeroDivisionError: division by zero", "(line 2)"]),
    "syntax_error": ("x = 1\ndef get_config(:\n    pass\n", ["SyntaxError", "(line 2)"]),
    "missing_import": ("import no_such_module_jaxdl\n", ["ModuleNotFoundError", "(line 1)"]),
    "raises_in_get_config": (
        """
        def get_config():
            raise RuntimeError("boom\\nsecond line")
        """,
        ["RuntimeError: boom second line", "(line 3)"],
    ),
    "no_get_config": ("CONFIG = {}\n", ["defines no get_config()"]),
    "returns_dict": ("def get_config():\n    return {}\n", ["returned dict", "ConfigDict"]),
}


@pytest.mark.parametrize("case", list(BAD_EXPERIMENTS))
def test_bad_experiment_file(capsys, run_dir, tmp_path, tmp_path_factory, case):
    source, words = BAD_EXPERIMENTS[case]
    # Outside tmp_path: importing a file may write __pycache__ beside it.
    experiment = tmp_path_factory.mktemp("experiments") / f"{case}.py"
    experiment.write_text(textwrap.dedent(source))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "train", "--config", str(experiment), "--workdir", str(run_dir))
    assert_one_line_error(code, err, f"experiment file {experiment}", *words)
    if case not in ("no_get_config", "returns_dict"):
        assert "--verbose" in err  # Where the traceback is.
    assert snapshot(tmp_path) == before


# Config values.

NON_FINITE = [
    ("optimizer.learning_rate", "nan"),
    ("optimizer.learning_rate", "inf"),
    ("optimizer.weight_decay", "inf"),
    ("optimizer.grad_clip_norm", "inf"),
    ("optimizer.eps", "nan"),
    ("optimizer.b1", "nan"),
    ("optimizer.b2", "-inf"),
    ("optimizer.momentum", "nan"),
    ("data.validation_fraction", "nan"),
    ("schedule.end_factor", "inf"),
    ("schedule.decay_factor", "nan"),
]


@pytest.mark.parametrize(("field", "value"), NON_FINITE, ids=[f"{f}={v}" for f, v in NON_FINITE])
def test_non_finite_number_refused(capsys, run_dir, tmp_path, field, value):
    words = (f"config.{field}", "finite number")
    train_fails(capsys, tmp_path, run_dir, f"--config.{field}={value}", words=words)


@pytest.mark.parametrize("kind", ["finished", "finished_fresh", "new"])
def test_negative_num_steps_refused(capsys, run_dir, tmp_path, kind):
    target, extra = workdir_args(kind, run_dir, tmp_path)
    words = ("config.train.num_steps", "positive integer")
    train_fails(capsys, tmp_path, target, *extra, "--config.train.num_steps=-5", words=words)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        # A tuple field: config_flags uses ast.literal_eval, so this stays a string.
        ('--config.data.augment=__import__("os").system("touch PWNED")', ["data.augment"]),
        ('--config.data.augment=("shift", __import__("os").system("touch PWNED"))', []),
        ('--config.model.name=__import__("os").system("touch PWNED")', ["unknown model"]),
        ('--config.train.num_steps=__import__("os").system("touch PWNED")', ["num_steps"]),
    ],
    ids=["tuple_field", "tuple_field_with_comma", "str_field", "int_field"],
)
def test_override_is_never_evaluated(capsys, tmp_path, monkeypatch, override, words):
    monkeypatch.chdir(tmp_path)
    train_fails(capsys, tmp_path, tmp_path / "new_run", override, words=tuple(words))
    assert not (tmp_path / "PWNED").exists()


# Workdirs that cannot be read or used.


def break_config(run_dir: Path, kind: str) -> str:
    """Damages run_dir/config.json in one way; returns a word the error must contain."""
    config = run_dir / "config.json"
    if kind == "not_json":
        config.write_text('{"seed": 0,')
        return "not valid JSON"
    if kind == "not_object":
        config.write_text("[1, 2]\n")
        return "not an object"
    if kind == "dotted_key":  # Valid JSON that ConfigDict refuses.
        config.write_text('{"a.b": 1}\n')
        return "not a jaxdl config"
    if kind == "binary":
        config.write_bytes(b"\xff\xfe\x00garbage")
        return "not text"
    config.unlink()
    config.mkdir()
    return "is a directory"


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("kind", ["not_json", "not_object", "dotted_key", "binary", "directory"])
def test_broken_config_json(capsys, run_dir, tmp_path, command, kind):
    word = break_config(run_dir, kind)
    before = snapshot(tmp_path)
    argv = [command, "--workdir", str(run_dir)]
    argv += ["--config", QUICK] if command == "train" else []
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, str(run_dir / "config.json"), word)
    assert snapshot(tmp_path) == before


def test_eval_of_incomplete_config_json(capsys, run_dir, tmp_path):
    (run_dir / "config.json").write_text('{"seed": 0}\n')
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "eval", "--workdir", str(run_dir))
    assert_one_line_error(code, err, str(run_dir / "config.json"), "not a complete jaxdl config")
    assert snapshot(tmp_path) == before


def test_eval_of_non_finite_config_json(capsys, run_dir, tmp_path):
    config = run_dir / "config.json"
    config.write_text(config.read_text().replace('"learning_rate": 0.001', '"learning_rate": NaN'))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "eval", "--workdir", str(run_dir))
    assert_one_line_error(code, err, str(config), "config.optimizer.learning_rate", "finite")
    assert snapshot(tmp_path) == before


def test_broken_summary_json(capsys, run_dir, tmp_path):
    (run_dir / "summary.json").write_text("{")
    words = (str(run_dir / "summary.json"), "not valid JSON")
    train_fails(capsys, tmp_path, run_dir, words=words)


@pytest.mark.parametrize("command", ["train", "train_fresh", "eval"])
def test_workdir_is_a_file(capsys, tmp_path, command):
    path = tmp_path / "afile"
    path.write_text("not a run\n")
    before = snapshot(tmp_path)
    argv = ["eval"] if command == "eval" else ["train", "--config", QUICK]
    argv += ["--fresh"] if command == "train_fresh" else []
    code, _, err = run_cli(capsys, *argv, "--workdir", str(path))
    assert_one_line_error(code, err, f"--workdir {path}", "file")
    assert snapshot(tmp_path) == before


def test_workdir_under_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    words = ("cannot be created", str(tmp_path / "afile"))
    train_fails(capsys, tmp_path, tmp_path / "afile" / "run", words=words)


def test_workdir_dangling_symlink(capsys, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    train_fails(capsys, tmp_path, link, words=(f"--workdir {link}", "does not exist"))


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("what", ["dir", "config_json"])
def test_unreadable_workdir(capsys, run_dir, tmp_path, command, what):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    target = run_dir if what == "dir" else run_dir / "config.json"
    before = snapshot(tmp_path)
    target.chmod(0)
    try:
        argv = [command, "--workdir", str(run_dir)]
        argv += ["--config", QUICK] if command == "train" else []
        code, _, err = run_cli(capsys, *argv)
    finally:
        target.chmod(0o755 if what == "dir" else 0o644)
    assert_one_line_error(code, err, str(run_dir), "Permission denied")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "eval"])
def test_os_error_while_reading_workdir(capsys, run_dir, tmp_path, monkeypatch, command):
    """The same path as a permission problem, simulated so that it runs as root too."""
    read_text = Path.read_text

    def denied(path: Path, *args, **kwargs) -> str:
        if path.name == "config.json":
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    before = snapshot(tmp_path)
    argv = [command, "--workdir", str(run_dir)]
    argv += ["--config", QUICK] if command == "train" else []
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, str(run_dir / "config.json"), "Permission denied")
    assert snapshot(tmp_path) == before


# Symlinks inside the workdir must not lead outside it.


def plant_link(run_dir: Path, outside: Path, kind: str) -> Path:
    if kind == "file":
        link, target = run_dir / "metrics.jsonl", outside / "metrics.jsonl"
        target.write_text("")
        link.unlink()
    elif kind == "dir":
        link, target = run_dir / "tensorboard", outside
        shutil.rmtree(link)
    elif kind == "nested":
        link, target = run_dir / "checkpoints" / "extra", outside
    else:  # A dangling link: a write through it would create the file outside.
        link, target = run_dir / "summary.tmp", outside / "not_yet"
    link.symlink_to(target)
    return link


@pytest.mark.parametrize("kind", ["file", "dir", "nested", "dangling"])
def test_symlink_out_of_workdir_refused(capsys, run_dir, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = plant_link(run_dir, outside, kind)
    words = (str(link), "symlink", "outside the workdir", "Remove the link")
    train_fails(capsys, tmp_path, run_dir, words=words)


def test_symlinks_inside_workdir_and_linked_workdir_are_fine(capsys, run_dir, tmp_path):
    (run_dir / "alias.json").symlink_to("summary.json")
    (run_dir / "checkpoints" / "up").symlink_to("../tensorboard")
    linked = tmp_path / "linked"
    linked.symlink_to(run_dir)  # Where the user keeps the run is their choice.
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "train", "--config", QUICK, "--workdir", str(linked))
    assert code == 0, err
    assert "nothing to do" in out
    assert snapshot(tmp_path) == before


def test_symlink_loop_refused(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(UserInputError, match="symlink that loops"):
        workdir.check_contained(tmp_path)


def test_fresh_moves_a_run_with_outside_links_aside(capsys, run_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    plant_link(run_dir, outside, "dir")
    original = snapshot(run_dir)
    argv = ["train", "--config", QUICK, "--workdir", str(run_dir), "--fresh"]
    code, _, err = run_cli(capsys, *argv, "--config.train.num_steps=20")
    assert code == 0, err
    (moved,) = tmp_path.glob("run.prev-*")
    assert snapshot(moved) == original
    assert list(outside.iterdir()) == []  # Nothing was written through the old link.


def test_start_new_writes_config_atomically(tmp_path, monkeypatch, finished_run):
    config = workdir.load_config(finished_run)
    target = tmp_path / "run"

    def killed(fd: int) -> None:
        raise KeyboardInterrupt  # As if the process died between write and rename.

    monkeypatch.setattr(workdir.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        workdir.start_new(target, config)
    assert list(target.iterdir()) == []  # No half config.json, no temporary file left.
    monkeypatch.undo()
    workdir.start_new(target, config)
    assert [p.name for p in target.iterdir()] == ["config.json"]
    assert (target / "config.json").read_text() == workdir.config_to_json(config)


# Paths from the config: data.data_dir and npz files.


def bad_data(tmp_path: Path, case: str) -> tuple[list[str], tuple[str, ...]]:
    data = tmp_path / "data"
    data.mkdir()
    if case == "data_dir_is_file":
        (data / "f").write_text("x")
        return [f"--config.data.data_dir={data / 'f'}"], ("data.data_dir", "is a file")
    if case == "digits_data_dir_parent_missing":
        return [f"--config.data.data_dir={data / 'a' / 'b'}"], ("data.data_dir", "neither")
    if case == "mnist_data_dir_missing":
        overrides = ["--config.data.name=mnist", f"--config.data.data_dir={data / 'nope'}"]
        return overrides, ("data.data_dir", "does not exist", "not prepared")
    path = data / "bad.npz"
    x, y = np.zeros((10, 8, 8, 1), np.uint8), np.zeros(10, np.int64)
    if case == "npz_truncated":
        np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return [f"--config.data.name=npz:{path}"], (str(path), "truncated")
    np.savez(path, x_train=x, y_train=y, x_test=np.array([{"a": 1}], dtype=object), y_test=y)
    return [f"--config.data.name=npz:{path}"], (str(path), "x_test", "allow_pickle")


DATA_CASES = [
    "data_dir_is_file",
    "digits_data_dir_parent_missing",
    "mnist_data_dir_missing",
    "npz_truncated",
    "npz_object_array",
]


@pytest.mark.parametrize("kind", ["finished_fresh", "new"])
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_path(capsys, run_dir, tmp_path, case, kind):
    overrides, words = bad_data(tmp_path, case)
    target, extra = workdir_args(kind, run_dir, tmp_path)
    train_fails(capsys, tmp_path, target, *extra, *overrides, words=words)
