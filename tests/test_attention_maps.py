"""`jaxdl attention`: attention weights read out of a trained ViT, rollout, and the PNG."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import cli
from jaxdl.engine import attention_maps
from tests.run_helpers import run_train


def test_rollout_of_uniform_and_identity_attention():
    tokens = 5
    identity = jnp.broadcast_to(jnp.eye(tokens), (2, 3, tokens, tokens))
    np.testing.assert_allclose(
        attention_maps.rollout([identity, identity]), np.eye(tokens)[None].repeat(2, 0), atol=1e-6
    )
    uniform = jnp.full((2, 3, tokens, tokens), 1.0 / tokens)
    result = attention_maps.rollout([uniform] * 3)
    np.testing.assert_allclose(result.sum(-1), 1.0, rtol=1e-6)
    grid = attention_maps.pooled_map(result, has_cls=True)
    assert grid.shape == (2, 2, 2) and grid.max() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vit") / "run"
    run_train(run_dir, config="experiments/digits_vit.py:quick")
    return run_dir


@pytest.mark.slow  # Trains a ViT (about 40 s); rollout and the refusal stay fast.
def test_attention_png_for_a_trained_vit(vit_run, capsys):
    plan_out = vit_run / "maps.png"
    assert (
        cli.main(["attention", "--workdir", str(vit_run), "--images", "3", "--out", str(plan_out)])
        == 0
    )
    assert plan_out.stat().st_size > 5000
    assert f"wrote {plan_out}" in capsys.readouterr().out
    # Refuses to overwrite what is there.
    before = plan_out.read_bytes()
    assert cli.main(["attention", "--workdir", str(vit_run), "--out", str(plan_out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert plan_out.read_bytes() == before


@pytest.mark.slow  # Trains a ViT (about 40 s); rollout and the refusal stay fast.
def test_one_weight_array_per_layer(vit_run):
    from jaxdl.engine.evaluation import restore_checkpoint

    plan, _, state = restore_checkpoint(vit_run, "best")
    images = jnp.zeros((2, 8, 8, 1))
    weights = attention_maps.attention_weights(state, images)
    assert len(weights) == plan.config.model.num_layers
    heads, tokens = plan.config.model.num_heads, 16  # 2x2 patches of an 8x8 image.
    for layer in weights:
        assert layer.shape == (2, heads, tokens, tokens)
        np.testing.assert_allclose(jax.device_get(layer).sum(-1), 1.0, rtol=1e-5)


def test_model_without_attention_is_one_line_error(run_dir, capsys):
    # run_dir: a copy of the session's finished quick MLP run (tests/conftest.py).
    assert cli.main(["attention", "--workdir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "has no attention layers" in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / attention_maps.DEFAULT_FILE).exists()
