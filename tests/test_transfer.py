"""Transfer learning through init_from: heads, saved steps, bad sources, position embeddings.

The source run is the session's finished `digits_mlp.py:quick` run (10 classes, checkpoints at
steps 20 and 40), copied per test. Runs go through the CLI in-process, on the 8 virtual devices
of conftest.py, so the merged state is placed on a real mesh.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxdl import optim
from jaxdl.cli import parse_config
from jaxdl.engine import init_from, loop, steps, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.setup import init_state
from jaxdl.models.vit import interpolate_position_embeddings
from tests.test_cli_errors import QUICK, assert_error, run_cli, snapshot

REPO = Path(__file__).resolve().parents[1]
SHORT = [  # 10 steps, one checkpoint at the end.
    "--config.train.num_steps=10",
    "--config.train.log_every=10",
    "--config.train.eval_every=10",
    "--config.train.checkpoint_every=10",
    "--config.train.progress_bar=False",
]


def saved_arrays(workdir: Path, step: int) -> dict[str, np.ndarray]:
    spec = str(workdir)
    return init_from.read_arrays(spec, init_from.Source(workdir, step))


# init_from through the CLI.


def test_init_from_new_head_copies_the_rest_and_resumes_without_it(capsys, run_dir, tmp_path):
    target = tmp_path / "finetune"
    argv = [
        "train",
        "--config",
        QUICK,
        "--workdir",
        str(target),
        f"--config.init_from={run_dir}",
        "--config.data.classes=(0, 1, 2, 3, 4)",
        "--config.optimizer.frozen=('backbone',)",
        *SHORT,
    ]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    best = json.loads((run_dir / "summary.json").read_text())["final_metrics_step"]
    line = f"jaxdl: init_from {run_dir} step {best}: copied 2 arrays; re-initialised "
    assert line + "params/Dense_1/bias (10,)->(5,), params/Dense_1/kernel (32,10)->(32,5)" in out
    report = {
        "workdir": str(run_dir),
        "step": best,
        "copied": 2,
        "reinitialized": ["params/Dense_1/bias", "params/Dense_1/kernel"],
        "interpolated": [],
    }
    assert json.loads((target / "summary.json").read_text())["init_from"] == report

    source, tuned = saved_arrays(run_dir, best), saved_arrays(target, 10)
    # The frozen backbone is the source's, bit for bit (adamw's weight decay included)...
    for path in ("params/Dense_0/kernel", "params/Dense_0/bias"):
        assert tuned[path].tobytes() == source[path].tobytes()
    # ...and the new 5-class head trained.
    assert tuned["params/Dense_1/kernel"].shape == (32, 5)
    assert json.loads((target / "summary.json").read_text())["num_params"] == 64 * 32 + 32 + 165

    # Killed before the summary: the resume restores its own checkpoint, init_from is not
    # applied again, and the summary still reports it.
    (target / "summary.json").unlink()
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "jaxdl: init_from" not in out and "resuming at step 10" in out
    assert json.loads((target / "summary.json").read_text())["init_from"] == report


def test_locate_best_and_saved_step(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert init_from.saved_steps(run_dir) == [20, 40]
    assert init_from.locate(str(run_dir)).step == summary["final_metrics_step"]
    assert init_from.locate(f"{run_dir}:20") == init_from.Source(run_dir, 20)


def test_init_from_step_copies_that_step(capsys, run_dir, tmp_path):
    target = tmp_path / "from20"
    argv = ["train", "--config", QUICK, "--workdir", str(target), *SHORT]
    argv += [f"--config.init_from={run_dir}:20", "--config.optimizer.frozen=('.*',)"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert f"jaxdl: init_from {run_dir} step 20: copied 4 arrays\n" in out
    record = json.loads((target / "summary.json").read_text())["init_from"]
    assert (record["step"], record["copied"], record["reinitialized"]) == (20, 4, [])
    # Everything frozen: the final parameters are step 20's.
    source, tuned = saved_arrays(run_dir, 20), saved_arrays(target, 10)
    assert all(tuned[path].tobytes() == source[path].tobytes() for path in source)


def _no_checkpoints(tmp_path: Path) -> Path:
    path = tmp_path / "fresh_run"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


BAD_SOURCES = {
    "missing": (lambda tmp, run: tmp / "nope", ["does not exist, not a directory"]),
    "file": (lambda tmp, run: tmp / "run" / "config.json", ["is a file, not a directory"]),
    "not_a_run": (
        lambda tmp, run: run / "checkpoints",
        ["holds no config.json", "not a jaxdl run"],
    ),
    "no_checkpoints": (lambda tmp, run: _no_checkpoints(tmp), ["has no checkpoint yet"]),
    "step_not_saved": (lambda tmp, run: f"{run}:30", ["no checkpoint of step 30", "20, 40"]),
    "step_not_integer": (lambda tmp, run: f"{run}:best", ["STEP 'best' is not an integer"]),
    "own_workdir": (lambda tmp, run: run, ["this run's own workdir"]),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_bad_init_from_exits_2_and_writes_nothing(capsys, run_dir, tmp_path, case):
    source, words = BAD_SOURCES[case]
    spec = str(source(tmp_path, run_dir))
    # The own workdir only comes up with --fresh: otherwise the config differs from the saved one.
    target, extra = (run_dir, ["--fresh"]) if case == "own_workdir" else (tmp_path / "new", [])
    before = snapshot(tmp_path)
    argv = ["train", "--config", QUICK, "--workdir", str(target), *extra]
    code, _, err = run_cli(capsys, *argv, f"--config.init_from={spec}")
    assert_error(code, err, "config.init_from=", *words)
    assert snapshot(tmp_path) == before


SETUP_ERRORS = {
    "group_matches_nothing": (
        ["--config.optimizer.frozen=('encoder/.*',)"],
        ["config.optimizer.frozen", "'encoder/.*' matches no parameter", "Dense_0, Dense_1"],
    ),
    "parameter_in_two_groups": (
        [
            "--config.optimizer.frozen=('head',)",
            "--config.optimizer.lr_multipliers=('Dense_.*=2',)",
        ],
        ["config.optimizer.lr_multipliers", "'Dense_1/bias' is in two groups"],
    ),
    "bad_multiplier": (
        ["--config.optimizer.lr_multipliers=('backbone',)"],
        ["config.optimizer.lr_multipliers", "'GROUP=FACTOR'"],
    ),
    "unknown_label": (["--config.data.classes=(3, 10)"], ["data.classes", "no label 10"]),
}


@pytest.mark.parametrize("case", list(SETUP_ERRORS))
def test_group_and_subset_errors_exit_2(capsys, tmp_path, case):
    overrides, words = SETUP_ERRORS[case]
    before = snapshot(tmp_path)
    argv = ["train", "--config", QUICK, "--workdir", str(tmp_path / "new"), *overrides]
    assert_error(*run_cli(capsys, *argv)[::2], *words)
    assert snapshot(tmp_path) == before


# Position embeddings: a ViT pretrained at one image size, fine-tuned at another.


def test_merge_plan_interpolates_position_embeddings_from_shapes():
    source = {
        "params/cls": (1, 1, 64),
        "params/position_embedding": (1, 17, 64),
        "params/Dense_0/kernel": (64, 10),
        "params/Dense_0/bias": (10,),
        "params/patch_embedding/kernel": (2, 2, 1, 64),
    }
    target = {**source, "params/position_embedding": (1, 65, 64), "params/Dense_0/kernel": (64, 5)}
    target["params/Dense_0/bias"] = (5,)
    target["params/extra/scale"] = (3,)
    merge = init_from.plan_merge(source, target)
    assert sorted(merge.copied) == ["params/cls", "params/patch_embedding/kernel"]
    assert merge.interpolated == {"params/position_embedding": ((1, 17, 64), (1, 65, 64))}
    assert merge.has_cls == {"params/position_embedding": True}
    assert merge.reinitialized == {
        "params/Dense_0/bias": ((10,), (5,)),
        "params/Dense_0/kernel": ((64, 10), (64, 5)),
        "params/extra/scale": (None, (3,)),
    }
    # Without a class token 17 patches are no square grid: re-initialised instead.
    del target["params/cls"]
    assert "params/position_embedding" in init_from.plan_merge(source, target).reinitialized


def _image_npz(path: Path, side: int) -> str:
    rng = np.random.default_rng(side)
    arrays = {}
    for split, count in (("train", 32), ("val", 16), ("test", 16)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (count, side, side, 1), dtype=np.uint8)
        arrays[f"y_{split}"] = np.arange(count) % 3
    np.savez(path, **arrays)
    return f"npz:{path}"


def _vit_plan(tmp_path: Path, side: int, *overrides: str) -> loop.Setup:
    """A one-block ViT with a class token over `side` x `side` images."""
    data = f"--config.data.name={_image_npz(tmp_path / f'images{side}.npz', side)}"
    small = ["--config.model.num_layers=1", "--config.model.hidden_size=16"]
    small += ["--config.model.num_heads=2", "--config.model.mlp_dim=16", "--config.model.pool=cls"]
    batches = ["--config.data.batch_size=16", "--config.data.eval_batch_size=16"]
    vit = str(REPO / "experiments" / "digits_vit.py") + ":quick"
    return loop.setup(parse_config(vit, [data, *small, *batches, *overrides]))


def test_vit_position_embeddings_interpolated_through_init_from(tmp_path):
    # The source: a run at 8x8 (16 patches and the class token) with one checkpoint, step 0.
    source, source_plan = tmp_path / "vit8", _vit_plan(tmp_path, 8)
    workdir.start_new(source, source_plan.config)
    old_state, feed = init_state(source_plan), steps.open_batch_feed(source_plan)
    checkpointer = Checkpointer(source / "checkpoints", keep=1)
    checkpointer.save(0, old_state, feed, {"best_step": None})
    checkpointer.wait()
    checkpointer.close()
    feed.close()

    # Fine-tuned at 16x16 (64 patches) on a mesh that splits the MLP kernels over 2 devices.
    spec = f"--config.init_from={source}"
    plan = _vit_plan(tmp_path, 16, spec, "--config.mesh.data=4", "--config.mesh.tensor=2")
    lines = []
    (tmp_path / "vit16").mkdir()
    state = init_from.start_state(plan, tmp_path / "vit16", lines.append)

    old = {
        path: np.asarray(leaf) for path, leaf in zip(*optim.param_paths(old_state)[:2], strict=True)
    }
    embedding = np.asarray(state.params["position_embedding"])
    assert embedding.shape == (1, 65, 16) and old["params/position_embedding"].shape == (1, 17, 16)
    expected = interpolate_position_embeddings(old["params/position_embedding"], 65, True)
    np.testing.assert_array_equal(embedding, np.asarray(expected))
    assert embedding[0, 0].tobytes() == old["params/position_embedding"][0, 0].tobytes()
    new = {path: np.asarray(leaf) for path, leaf in zip(*optim.param_paths(state)[:2], strict=True)}
    copied = [
        p for p in old if p.split("/")[0] in init_from.MERGED and p != "params/position_embedding"
    ]
    assert all(new[path].tobytes() == old[path].tobytes() for path in copied)
    # Placed as the plan says, some of it split over devices.
    placed = jax.tree.map(lambda a, s: a.sharding == s, state, plan.state_sharding)
    assert all(jax.tree.leaves(placed))
    assert not all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state.params))
    assert lines == [
        f"jaxdl: init_from {source} step 0: copied {len(copied)} arrays; "
        "interpolated params/position_embedding (1,17,16)->(1,65,16)"
    ]
    report = json.loads((tmp_path / "vit16" / init_from.REPORT_FILE).read_text())
    assert report["interpolated"] == ["params/position_embedding"] and not report["reinitialized"]
