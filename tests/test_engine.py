"""The engine in-process: mesh layouts, early stopping, the TFDS path, and its small parts."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl import config as config_lib
from jaxdl.engine import loop, loop_state, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.fingerprint import tree_fingerprint
from jaxdl.engine.metrics_log import MetricsLog, read_records
from jaxdl.engine.setup import init_state, unboxed_init


def _quick_mlp(**train_fields):
    config = config_lib.make_quick(config_lib.base_config())
    config.model.update({"name": "mlp"})
    config.model.hidden_sizes = (32,)
    config.data.batch_size = 32
    config.data.eval_batch_size = 64
    config.train.progress_bar = False
    config.train.update(train_fields)
    return config


def _train(config, run_dir):
    workdir.start_new(run_dir, config)
    plan = loop.setup(config)
    return plan, loop.train(plan, run_dir)


def _final_params(plan, run_dir):
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=2)
    state = checkpointer.restore_state(checkpointer.latest_step(), plan.abstract_state)
    checkpointer.close()
    return jax.device_get(state.params)


def test_eight_devices_match_one_device_and_fsdp_matches_data_parallel(tmp_path):
    results = {}
    for name, strategy, devices in [
        ("one", "data_parallel", 1),
        ("eight", "data_parallel", 0),
        ("fsdp", "fsdp", 0),
    ]:
        config = _quick_mlp(num_steps=10, eval_every=10, checkpoint_every=10)
        config.model.hidden_sizes = (256,)  # Large enough for fsdp to split the kernels.
        config.mesh.strategy, config.mesh.num_devices = strategy, devices
        plan, summary = _train(config, tmp_path / name)
        assert summary["devices"] == (devices or 8)
        results[name] = _final_params(plan, tmp_path / name)
        if strategy == "fsdp":
            specs = [leaf.sharding.spec for leaf in jax.tree.leaves(plan.abstract_state.params)]
            assert any("fsdp" in tuple(spec) for spec in specs)  # The pre-0.3 spelling works.
    # Reductions split over devices add in another order: equal to rounding, not bit for bit.
    chex.assert_trees_all_close(results["eight"], results["one"], rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(results["fsdp"], results["eight"], rtol=1e-4, atol=1e-6)


def test_early_stopping_stops_and_keeps_the_best_checkpoint(tmp_path):
    # A learning rate this small cannot move validation accuracy: no eval after the first improves.
    config = _quick_mlp(num_steps=40, eval_every=10, checkpoint_every=40, patience=2)
    config.optimizer.learning_rate = 1e-12
    _, summary = _train(config, tmp_path / "run")
    assert summary["stopped_early"] is True
    assert summary["steps"] == 30
    assert summary["best_metrics"]["step"] == 10
    assert summary["final_metrics_step"] == 10
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert 10 in steps and 30 in steps


def test_mnist_trains_through_the_tfds_path(tmp_path):
    config = _quick_mlp(num_steps=6, log_every=3, eval_every=3, checkpoint_every=6)
    config.data.name = "mnist"
    config.data.data_dir = str(tmp_path / "tfds")
    config.model = config_lib.ml_collections.ConfigDict({"name": "lenet5"})
    with tfds.testing.mock_data(num_examples=80):
        plan, summary = _train(config, tmp_path / "run")
    assert plan.dataset.input_shape == (28, 28, 1)
    assert summary["steps"] == 6
    assert 0.0 <= summary["final_metrics"]["test/accuracy"] <= 1.0
    assert np.isfinite(summary["final_metrics"]["test/loss"])
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    splits = {record["split"] for record in read_records(tmp_path / "run")}
    assert splits == {"train", "val", "test"}
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_metrics_log_rewinds_to_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path, resume_step=0)
    for step in (10, 20, 30):
        log.write(step, "train", {"loss": 1.0 / step})
    log.close()
    log = MetricsLog(tmp_path, resume_step=20)
    log.write(30, "train", {"loss": 0.5})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_records(tmp_path)] == [
        (10, 0.1),
        (20, 0.05),
        (30, 0.5),
    ]


def test_fingerprint_sees_every_bit_path_and_dtype():
    tree = {"a": jnp.arange(4, dtype=jnp.float32), "b": {"c": jnp.ones((2, 2))}}
    base = tree_fingerprint(tree)
    assert base == tree_fingerprint(jax.tree.map(jnp.copy, tree))
    flipped = np.asarray(tree["a"]).copy()
    flipped.view(np.uint32)[0] ^= 1  # One bit of one float.
    assert tree_fingerprint({**tree, "a": jnp.asarray(flipped)}) != base
    assert tree_fingerprint({"x": tree["a"], "b": tree["b"]}) != base
    assert tree_fingerprint({**tree, "a": tree["a"].astype(jnp.bfloat16)}) != base


def test_throughput_counts_only_timed_stretches():
    meter = loop.Throughput()
    assert meter.steps_per_second is None
    meter.start(1)
    meter.stop(11)
    meter.stop(20)  # Not started: ignored.
    assert meter.steps == 10 and meter.seconds > 0


def test_workdir_states(tmp_path):
    config = _quick_mlp()
    run_dir = tmp_path / "run"
    assert workdir.inspect_workdir(run_dir, config, fresh=False) is workdir.WorkdirState.NEW
    workdir.start_new(run_dir, config)
    assert workdir.inspect_workdir(run_dir, config, fresh=False) is workdir.WorkdirState.RESUME
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 0
    assert config_lib.flatten(workdir.load_config(run_dir)) == config_lib.flatten(config)
    (run_dir / "summary.json").write_text("{}")
    assert workdir.inspect_workdir(run_dir, config, fresh=False) is workdir.WorkdirState.FINISHED


@pytest.mark.parametrize("field", ["train.num_steps", "train.eval_every", "data.batch_size"])
def test_validate_rejects_non_positive_counts(field):
    config = _quick_mlp()
    section, name = field.split(".")
    config[section][name] = 0
    with pytest.raises(config_lib.UserInputError, match=field.replace(".", r"\.")):
        config_lib.validate(config)


def test_validation_bookkeeping_in_min_mode_and_patience():
    config = _quick_mlp(monitor="loss", monitor_mode="min", patience=2)
    book = loop_state.new_loop_state()
    assert loop_state.record_validation(book, 10, {"loss": 0.5}, config)
    assert loop_state.record_validation(book, 20, {"loss": 0.4}, config)
    # Ties: no improvement.
    assert not loop_state.record_validation(book, 30, {"loss": 0.4}, config)
    assert not book["stopped_early"]
    assert not loop_state.record_validation(book, 40, {"loss": 0.6}, config)
    assert book["stopped_early"]
    assert (book["best_step"], book["best_metrics"]) == (20, {"loss": 0.4})


def test_evaluations_before_monitor_from_are_not_candidates():
    config = _quick_mlp(monitor="loss", monitor_mode="min", patience=1)
    config.train.monitor_from = 20
    book = loop_state.new_loop_state()
    assert not loop_state.record_validation(book, 10, {"loss": 0.1}, config)
    assert book["best_step"] is None and not book["stopped_early"]
    assert loop_state.record_validation(book, 20, {"loss": 0.5}, config)
    # A pruned run also waits for its target sparsity: prune.end = 0.6 of 40 quick steps.
    config.train.monitor_from = 0
    config.prune.sparsity = 0.5
    assert loop_state.record_validation(loop_state.new_loop_state(), 24, {"loss": 0.5}, config)
    assert not loop_state.record_validation(loop_state.new_loop_state(), 23, {"loss": 0.5}, config)


def _count_traces(plan, monkeypatch) -> dict[str, int]:
    """Counts how often the task's steps are traced: each trace is one compilation."""
    counts = {"train_step": 0, "eval_step": 0}
    for name in counts:
        original = getattr(plan.task, name)

        def counting(*args, _name=name, _original=original):
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(plan.task, name, counting)
    return counts


def test_steps_compile_once_per_run_and_once_after_resume(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    config = _quick_mlp(num_steps=20, log_every=5, eval_every=10, checkpoint_every=10)
    config.data.augment = ("shift", "flip")
    workdir.start_new(run_dir, config)
    plan = loop.setup(config)
    counts = _count_traces(plan, monkeypatch)
    loop.train(plan, run_dir)
    # 20 steps, 2 validations, 2 checkpoints and a test pass: still one trace of each step.
    assert counts == {"train_step": 1, "eval_step": 1}

    config.train.num_steps = 30  # The same workdir resumes from step 20 with a restored state.
    plan = loop.setup(config)
    counts = _count_traces(plan, monkeypatch)
    summary = loop.train(plan, run_dir)
    assert summary["steps"] == 30
    assert counts == {"train_step": 1, "eval_step": 1}


def test_throughput_report_quick_mode(tmp_path):
    from benchmarks import throughput

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nAn earlier section stays.\n")
    assert (
        throughput.main(["--quick", "--experiments", "digits_mlp", "--results", str(results)]) == 0
    )
    text = results.read_text()
    assert "An earlier section stays." in text
    row = next(line for line in text.splitlines() if line.startswith("| digits_mlp |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    step_alone, pipeline, end_to_end, ratio = map(float, cells[2:])
    assert step_alone > 0 and pipeline > 0 and end_to_end > 0
    assert ratio == pytest.approx(end_to_end / step_alone, abs=0.02)
    assert "| mnist (mock_data) | 600 | 0 |" in text
    # Running again replaces the section instead of adding a second one.
    throughput.main(["--quick", "--experiments", "digits_mlp", "--results", str(results)])
    assert results.read_text().count(throughput.BEGIN) == 1


def test_init_compiled_without_optimisations_matches_an_optimised_build():
    config = config_lib.make_quick(config_lib.base_config())
    config.model = config_lib.ml_collections.ConfigDict(
        {"name": "cnn", "conv_features": (8,), "dropout_rate": 0.1}
    )
    plan = loop.setup(config)
    optimised = jax.jit(unboxed_init(plan.task))(jax.random.PRNGKey(0), plan.example_batch())
    state = init_state(plan)
    # The same draws: at most the last bit of a float differs.
    chex.assert_trees_all_close(state, optimised, rtol=1e-6, atol=1e-7)
    assert tree_fingerprint(state) == tree_fingerprint(init_state(plan))
