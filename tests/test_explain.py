"""`jaxdl explain` on saved quick runs, in process: the files it writes and its bad input."""

import numpy as np
import pytest

from tests.test_cli_errors import assert_error, run_cli, snapshot


def explain(capsys, run, out, *flags):
    return run_cli(capsys, "explain", "--workdir", str(run), "--out", str(out), *flags)


def load(out):
    assert out.is_file()
    with np.load(out.with_suffix(".npz")) as arrays:
        return dict(arrays)


def test_integrated_gradients_on_a_quick_cnn(capsys, reference_run, tmp_path):
    before = snapshot(reference_run)
    out = tmp_path / "ig.png"
    code, stdout, err = explain(capsys, reference_run, out, "--method", "ig", "--num", "6")
    assert code == 0, err
    assert "IG completeness (adaptive rule, zeros baseline, 6 examples): " in stdout
    arrays = load(out)
    # Every example within the default 1%, at 128 steps or refined to more.
    assert arrays["completeness_error"].max() <= 0.01
    assert set(arrays["steps"]) <= {128, 256, 512, 1024}
    within = int(stdout.split("): ")[1].split(" within 1% at 128 steps")[0])
    assert within == int((arrays["steps"] == 128).sum())
    assert arrays["maps"].shape == arrays["inputs"].shape == (6, 8, 8, 1)
    assert arrays["display_maps"].shape == (6, 8, 8)
    assert arrays["completeness_error"].shape == (6,)
    # The maps are the computed attributions: the printed worst error is theirs.
    worst = float(stdout.split("worst ")[1].split("%")[0])
    assert worst == pytest.approx(100 * arrays["completeness_error"].max(), abs=1e-3)
    np.testing.assert_array_equal(arrays["targets"], arrays["logits"].argmax(-1))
    assert snapshot(reference_run) == before  # Nothing written into the run.


def test_gradcam_is_non_negative_at_input_size(capsys, reference_run, tmp_path):
    out = tmp_path / "cam.png"
    code, stdout, err = explain(
        capsys, reference_run, out, "--method", "gradcam", "--num", "5", "--target", "label"
    )
    assert code == 0, err
    assert "Grad-CAM of layer Conv_1" in stdout  # The quick CNN's last convolution.
    arrays = load(out)
    assert arrays["maps"].shape == (5, 8, 8)
    assert arrays["maps"].min() >= 0.0 and arrays["maps"].max() > 0.0
    np.testing.assert_array_equal(arrays["targets"], arrays["labels"])
    first = tmp_path / "first.png"
    code, stdout, err = explain(
        capsys, reference_run, first, "--method", "gradcam", "--layer", "Conv_0", "--num", "5"
    )
    assert code == 0, err
    assert not np.allclose(load(first)["maps"], arrays["maps"])


@pytest.mark.parametrize("method", ["saliency", "gradxinput", "smoothgrad"])
def test_gradient_methods_on_an_mlp(capsys, finished_run, tmp_path, method):
    out = tmp_path / f"{method}.png"
    flags = ["--samples", "4"] if method == "smoothgrad" else []
    code, _, err = explain(capsys, finished_run, out, "--method", method, "--num", "3", *flags)
    assert code == 0, err
    maps = load(out)["maps"]
    assert maps.shape == (3, 8, 8, 1) and np.abs(maps).max() > 0
    if method == "saliency":
        assert maps.min() >= 0.0


def test_ig_mean_baseline_is_the_train_mean(capsys, finished_run, tmp_path):
    out = tmp_path / "ig_mean.png"
    code, stdout, err = explain(
        capsys,
        finished_run,
        out,
        "--method",
        "ig",
        "--baseline",
        "mean",
        "--steps",
        "16",
        "--quadrature",
        "uniform",
        "--tolerance",
        "0",
    )
    assert code == 0, err
    assert "(uniform rule, mean baseline, 16 examples, 16 steps)" in stdout
    np.testing.assert_array_equal(load(out)["steps"], 16)  # Tolerance 0: nothing refined.
    baseline = load(out)["baseline"]
    assert baseline.shape == (8, 8, 1) and 0.0 < baseline.mean() < 1.0


def test_filters_of_a_cnn_and_of_an_mlp(capsys, reference_run, finished_run, tmp_path):
    code, _, err = explain(capsys, reference_run, tmp_path / "f.png", "--method", "filters")
    assert code == 0, err
    arrays = load(tmp_path / "f.png")
    assert arrays["kernel"].shape == (3, 3, 1, 8) and arrays["images"].shape == (8, 3, 3, 1)
    code, _, err = explain(capsys, finished_run, tmp_path / "m.png", "--method", "filters")
    assert code == 0, err
    arrays = load(tmp_path / "m.png")
    hidden = arrays["kernel"].shape[1]
    assert arrays["kernel"].shape[0] == 64 and arrays["images"].shape == (hidden, 8, 8, 1)


def test_embedding_and_neighbors(capsys, reference_run, tmp_path):
    out = tmp_path / "emb.png"
    code, _, err = explain(capsys, reference_run, out, "--method", "embedding", "--split", "test")
    assert code == 0, err
    arrays = load(out)
    assert arrays["coords"].shape == (len(arrays["labels"]), 2)
    assert arrays["features"].shape == (len(arrays["labels"]), 16)  # The quick CNN's width.
    out = tmp_path / "nn.png"
    code, stdout, err = explain(
        capsys, reference_run, out, "--method", "neighbors", "--num", "4", "--neighbors", "3"
    )
    assert code == 0, err
    assert "nearest train example has the query's label" in stdout
    arrays = load(out)
    assert arrays["train_indices"].shape == arrays["distances"].shape == (4, 3)
    assert np.all(np.diff(arrays["distances"], axis=1) >= 0)
    # Queries spread over the classes: by default one of each of the ten digits, in order.
    code, _, err = explain(capsys, reference_run, tmp_path / "all.png", "--method", "neighbors")
    assert code == 0, err
    np.testing.assert_array_equal(load(tmp_path / "all.png")["query_labels"], np.arange(10))
    assert len(set(arrays["query_labels"])) == 4


BAD_INPUT = {
    "unknown method": (["--method", "salency"], ["--method 'salency'", "Did you mean: saliency"]),
    "gradcam on an mlp": (["--method", "gradcam"], ["needs a convolutional model", "'mlp'"]),
    "rollout on a non-vit": (["--method", "rollout"], ["needs a Vision Transformer", "'mlp'"]),
    "layer without gradcam": (["--method", "ig", "--layer", "Conv_0"], ["--layer is for"]),
    "bad baseline": (["--method", "ig", "--baseline", "ones"], ["--baseline 'ones'", "zeros"]),
    "zero steps": (["--method", "ig", "--steps", "0"], ["--steps 0"]),
    "bad quadrature": (["--method", "ig", "--quadrature", "gauss"], ["--quadrature 'gauss'"]),
    "negative tolerance": (["--method", "ig", "--tolerance", "-0.1"], ["--tolerance -0.1"]),
    "max steps below steps": (["--method", "ig", "--max-steps", "64"], ["--max-steps 64"]),
    "max steps below set steps": (
        ["--method", "ig", "--steps", "32", "--max-steps", "16"],
        ["--max-steps 16 is below --steps 32"],
    ),
    "bad embedding": (["--method", "embedding", "--embedding", "umap"], ["--embedding", "tsne"]),
    "bad split": (["--method", "ig", "--split", "dev"], ["--split 'dev'"]),
    "too many neighbors": (["--method", "neighbors", "--neighbors", "100000"], ["--neighbors"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_exits_2_and_writes_nothing(capsys, finished_run, tmp_path, case):
    flags, words = BAD_INPUT[case]
    before = snapshot(tmp_path)
    code, _, err = explain(capsys, finished_run, tmp_path / "out.png", *flags)
    assert_error(code, err, *words)
    assert snapshot(tmp_path) == before


def test_unknown_layer_lists_the_convolutions(capsys, reference_run, tmp_path):
    code, _, err = explain(
        capsys, reference_run, tmp_path / "o.png", "--method", "gradcam", "--layer", "conv9"
    )
    assert_error(code, err, "--layer 'conv9'", "available: Conv_0, Conv_1")


@pytest.mark.parametrize("existing", ["o.png", "o.npz"])
def test_existing_output_is_refused_and_kept(capsys, finished_run, tmp_path, existing):
    (tmp_path / existing).write_text("keep me")
    before = snapshot(tmp_path)
    code, _, err = explain(capsys, finished_run, tmp_path / "o.png", "--method", "saliency")
    assert_error(code, err, existing, "exists")
    assert snapshot(tmp_path) == before


def test_missing_workdir_and_non_png_out(capsys, tmp_path):
    code, _, err = explain(capsys, tmp_path / "nope", tmp_path / "o.png", "--method", "ig")
    assert_error(code, err, "holds no jaxdl run")
    code, _, err = explain(capsys, tmp_path, tmp_path / "o.jpg", "--method", "ig")
    assert_error(code, err, "--out", ".png")


def test_token_attributions_of_a_sequence_classifier(capsys, tmp_path, sequence_data_dir):
    run = tmp_path / "bilstm"
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        "experiments/brackets_bilstm.py:quick",
        "--workdir",
        str(run),
        f"--config.data.data_dir={sequence_data_dir}",
        "--config.train.num_steps=4",
        "--config.schedule.warmup_steps=1",
    )
    assert code == 0, err
    out = tmp_path / "ig.png"
    code, stdout, err = explain(capsys, run, out, "--method", "ig", "--num", "5")
    assert code == 0, err
    assert "attributions at the token embeddings (5, 40, 16)" in stdout
    arrays = load(out)
    assert arrays["maps"].shape == (5, 40, 16) and arrays["display_maps"].shape == (5, 40)
    # Per-token scores are sums over the embedding, so they keep IG's completeness.
    np.testing.assert_allclose(
        arrays["display_maps"].sum(axis=1), arrays["maps"].sum(axis=(1, 2)), rtol=1e-5
    )
    assert arrays["completeness_error"].max() <= 0.01
    code, _, err = explain(capsys, run, tmp_path / "s.png", "--method", "saliency", "--num", "3")
    assert code == 0, err
    assert load(tmp_path / "s.png")["display_maps"].min() >= 0.0
    code, _, err = explain(capsys, run, tmp_path / "f.png", "--method", "filters")
    assert_error(code, err, "no image", "use embedding or neighbors")
    code, stdout, err = explain(capsys, run, tmp_path / "n.png", "--method", "neighbors")
    assert code == 0, err
    assert "of 2 queries" in stdout  # One per class: balanced or not.
    assert load(tmp_path / "n.png")["train_indices"].shape == (2, 5)
    code, _, err = explain(capsys, run, tmp_path / "m.png", "--method", "ig", "--baseline", "mean")
    assert_error(code, err, "--baseline mean", "token ids", "--baseline zeros")
    assert not (tmp_path / "m.png").exists()


@pytest.mark.slow
def test_rollout_on_a_quick_vit(capsys, tmp_path):
    run = tmp_path / "vit"
    code, _, err = run_cli(capsys, "train", "--config", "digits_vit:quick", "--workdir", str(run))
    assert code == 0, err
    code, _, err = explain(capsys, run, tmp_path / "r.png", "--method", "rollout", "--num", "3")
    assert code == 0, err
    maps = load(tmp_path / "r.png")["maps"]
    # One value per 2x2 patch of the 8x8 digits (digits_vit's patch size), scaled to max 1.
    assert maps.shape == (3, 8, 8) and np.allclose(maps.max(axis=(1, 2)), 1.0)
    np.testing.assert_array_equal(maps[:, ::2, ::2], maps[:, 1::2, 1::2])
