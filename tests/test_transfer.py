"""Transfer learning: init_from, parameter groups (frozen, learning-rate multipliers), label subsets.

The source run is the session's finished `digits_mlp.py:quick` run (10 classes, checkpoints at
steps 20 and 40), copied per test. Runs go through the CLI in-process, on the 8 virtual devices
of conftest.py, so the merged state is placed on a real mesh.
"""

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from jaxdl import config as config_lib
from jaxdl import optim
from jaxdl.cli import parse_config
from jaxdl.data import load_dataset
from jaxdl.engine import init_from, loop, steps, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.setup import init_state
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.models.vit import interpolate_position_embeddings
from tests.data_helpers import data_config
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


# Parameter groups in the optimizer.


def _mlp_params() -> dict:
    """Boxed MLP parameters (4 -> 8 -> 3 classes): what Task.init_state gives the optimizer."""
    config = config_lib.base_config()
    config.model.hidden_sizes = (8,)
    model = build_model(config.model, num_classes=3)
    init = functools.partial(model.init, train=False)
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.ones((1, 4)))
    # Random values from NumPy: JAX's random bits take seconds to compile on CPU.
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes["params"])


def _optimizer(name="sgd", frozen=(), multipliers=(), **fields):
    config = config_lib.base_config()
    config.optimizer.name = name
    config.optimizer.learning_rate = 0.1
    config.optimizer.frozen = frozen
    config.optimizer.lr_multipliers = multipliers
    config.optimizer.update(fields)
    config.schedule.name = "constant"
    return optim.make_optimizer(config.optimizer, config.schedule, 100)[0]


def _steps(tx, boxed, count=3):
    """`count` updates with fixed pseudo-random gradients, as the train step applies them."""
    state = meta.unbox(tx.init(boxed))
    params = meta.unbox(boxed)
    rng = np.random.default_rng(0)
    update = jax.jit(tx.update)
    for _ in range(count):
        grads = jax.tree.map(lambda p: rng.standard_normal(p.shape, np.float32), params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _bits(tree) -> dict[str, bytes]:
    paths, leaves, _ = optim.param_paths(tree)
    return {path: np.asarray(leaf).tobytes() for path, leaf in zip(paths, leaves, strict=True)}


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_frozen_group_is_bit_identical_and_the_rest_trains(name):
    boxed = _mlp_params()
    start = _bits(meta.unbox(boxed))
    tuned = _bits(_steps(_optimizer(name, ("head",), weight_decay=0.1), boxed))
    assert {path for path in start if start[path] == tuned[path]} == {
        "Dense_1/bias",
        "Dense_1/kernel",
    }


def test_multiplier_zero_is_frozen_and_multipliers_scale_the_update():
    boxed = _mlp_params()
    plain = _steps(_optimizer(), boxed, 1)
    assert _bits(_steps(_optimizer(multipliers=("head=0",)), boxed, 1)) == _bits(
        _steps(_optimizer(frozen=("head",)), boxed, 1)
    )
    scaled = _steps(_optimizer(multipliers=("backbone=0.25", "Dense_1/bias=2")), boxed, 1)
    start = meta.unbox(boxed)
    for module, leaf, factor in [("Dense_0", "kernel", 0.25), ("Dense_1", "bias", 2.0)]:
        update = scaled[module][leaf] - start[module][leaf]
        reference = plain[module][leaf] - start[module][leaf]
        np.testing.assert_allclose(update, factor * reference, rtol=1e-5, atol=1e-7)
    assert _bits(scaled)["Dense_1/kernel"] == _bits(plain)["Dense_1/kernel"]


def test_no_groups_is_the_plain_optimizer():
    boxed = _mlp_params()
    for name in config_lib.OPTIMIZERS:
        grouped = jax.tree.structure(_optimizer(name, weight_decay=0.1).init(boxed))
        assert "PartitionState" not in str(grouped)


@pytest.mark.parametrize(
    ("frozen", "multipliers", "match"),
    [
        (
            ("encoder/.*",),
            (),
            r"optimizer.frozen: group 'encoder/.\*' matches no .*Dense_0, Dense_1",
        ),
        (("backbone",), ("Dense_0/kernel=0.1",), "'Dense_0/kernel' is in two groups"),
        (("head", "head"), (), "'Dense_1/bias' is in two groups"),
        ((), ("head",), "'GROUP=FACTOR'"),
        ((), ("head=-1",), "finite factor >= 0"),
        ((), ("head=nan",), "finite factor >= 0"),
        ((), ("=1",), "'GROUP=FACTOR'"),
        (("Dense_[",), (), "not a valid regular expression"),
    ],
)
def test_group_errors(frozen, multipliers, match):
    with pytest.raises(UserInputError, match=match):
        _optimizer("adamw", frozen, multipliers).init(_mlp_params())


def test_head_group_needs_the_logical_names():
    tx = _optimizer(frozen=("head",))
    with pytest.raises(ValueError, match="logical axis names"):
        tx.init(meta.unbox(_mlp_params()))
    # A regular expression needs none.
    _optimizer(frozen=("Dense_1/.*",)).init(meta.unbox(_mlp_params()))


# Label subsets.


def _labelled_npz(tmp_path: Path) -> str:
    """Train labels 0, 1, 2, 3, 0, 1, ... (input == index), test 0..3 twice, validation 3, 1."""
    train = np.arange(20)
    path = tmp_path / "labels.npz"
    np.savez(
        path,
        x_train=train[:, None].astype(np.float32),
        y_train=train % 4,
        x_val=np.array([[100.0], [101.0]], np.float32),
        y_val=np.array([3, 1]),
        x_test=np.arange(8)[:, None].astype(np.float32),
        y_test=np.arange(8) % 4,
    )
    return f"npz:{path}"


def _split(spec, name) -> tuple[list[int], list[int]]:
    examples = [spec.preprocess(spec.splits[name][i]) for i in range(len(spec.splits[name]))]
    return [int(e["input"][0]) for e in examples], [int(e["label"]) for e in examples]


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_subset_renumbers_labels_and_limits_train_per_class(tmp_path, pipeline):
    config = data_config(_labelled_npz(tmp_path), pipeline=pipeline)
    config.classes = (3, 1)
    config.train_examples_per_class = 2
    spec = load_dataset(config)
    assert spec.num_classes == 2
    # The first two 3s and 1s of train, in their order; 3 -> 0 and 1 -> 1.
    assert _split(spec, "train") == ([1, 3, 5, 7], [1, 0, 1, 0])
    assert _split(spec, "test") == ([1, 3, 5, 7], [1, 0, 1, 0])  # Not limited.
    assert _split(spec, "validation") == ([100, 101], [0, 1])
    config.classes = ()
    config.train_examples_per_class = 1  # Every class, one example each.
    spec = load_dataset(config)
    assert spec.num_classes == 4 and _split(spec, "train") == ([0, 1, 2, 3], [0, 1, 2, 3])


def test_subset_of_digits_streams_and_decodes_alike(digits_dir):
    subsets = []
    for pipeline in ("memory", "stream"):
        config = data_config("digits", digits_dir, pipeline=pipeline)
        config.classes, config.train_examples_per_class = (9, 5, 7), 4
        spec = load_dataset(config)
        subsets.append({name: _split_arrays(spec, name) for name in spec.splits})
    for name in subsets[0]:
        np.testing.assert_array_equal(subsets[0][name][0], subsets[1][name][0])
        np.testing.assert_array_equal(subsets[0][name][1], subsets[1][name][1])
    labels = subsets[0]["train"][1]
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert set(subsets[0]["test"][1].tolist()) == {0, 1, 2}


def _split_arrays(spec, name):
    examples = [spec.preprocess(spec.splits[name][i]) for i in range(len(spec.splits[name]))]
    return np.stack([e["input"] for e in examples]), np.array([e["label"] for e in examples])


@pytest.mark.parametrize(
    ("classes", "per_class", "match"),
    [
        ((1, 4), 0, r"data.classes=\(1, 4\): dataset .* has no label 4; its labels are 0..3"),
        ((-1, 2), 0, "has no label -1"),
        ((1, 2, 1), 0, "label 1 is listed twice"),
        ((2,), 0, "at least two labels"),
        ((1, True), 0, "True is not an integer label"),
        ("12", 0, "must be a tuple of labels"),
        ((), -1, r"data.train_examples_per_class=-1 must be an integer >= 0"),
        ((), 1.5, "data.train_examples_per_class=1.5"),
    ],
)
def test_subset_errors(tmp_path, classes, per_class, match):
    config = data_config(_labelled_npz(tmp_path))
    config.classes, config.train_examples_per_class = classes, per_class
    with pytest.raises(UserInputError, match=match):
        load_dataset(config)


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
