"""`jaxdl ablate`: grid expansion, statistics on hand-computed cases, a small real grid that
continues where it stopped, and bad input."""

import json
import math

import pytest

from jaxdl.errors import UserInputError
from jaxdl.studies import grid, stats
from tests.test_cli_errors import QUICK, run_cli


def test_values_split_at_top_level_commas_only():
    assert grid.split_values('(),("shift",)') == ["()", '("shift",)']
    assert grid.split_values("True,False") == ["True", "False"]
    assert grid.split_values("'a,b',[1, 2],3") == ["'a,b'", "[1, 2]", "3"]


def test_grid_is_the_cross_product_with_the_baseline_first():
    cells = grid.expand(["model.batch_norm=True,False", "--config.data.augment=(),('shift',)"])
    assert [cell.values for cell in cells] == [
        (("model.batch_norm", "True"), ("data.augment", "()")),
        (("model.batch_norm", "True"), ("data.augment", "('shift',)")),
        (("model.batch_norm", "False"), ("data.augment", "()")),
        (("model.batch_norm", "False"), ("data.augment", "('shift',)")),
    ]
    assert cells[3].overrides(2) == [
        "--config.model.batch_norm=False",
        "--config.data.augment=('shift',)",
        "--config.seed=2",
    ]


@pytest.mark.parametrize(
    "options",
    [[], ["model.batch_norm"], ["model.batch_norm="], ["a=1,1"], ["a=1,2", "a=3"], ["a=1,,2"]],
)
def test_bad_vary_options_are_refused(options):
    with pytest.raises(UserInputError):
        grid.expand(options)


def test_seeds_parse_and_refuse_duplicates():
    assert grid.parse_seeds("0,1,2") == [0, 1, 2]
    for text in ("", "0,0", "a", "-1"):
        with pytest.raises(UserInputError):
            grid.parse_seeds(text)


def test_statistics_match_hand_computed_values():
    summary = stats.summarize([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) * std / sqrt(n).
    assert summary["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert stats.summarize([5.0]) == {"n": 1, "mean": 5.0, "std": None, "ci95": None}
    rows = stats.with_differences([{"mean": 0.9}, {"mean": 0.95}])
    assert [row["diff"] for row in rows] == pytest.approx([0.0, 0.05])


def test_a_small_ablation_runs_reports_and_continues(tmp_path, capsys):
    out = tmp_path / "ablation"
    argv = (
        "ablate",
        "--config",
        QUICK,
        "--vary",
        "model.dropout_rate=0.0,0.5",
        "--seeds",
        "0,1",
        "--dir",
        str(out),
        "--workers",
        "2",
    )
    code, printed, err = run_cli(capsys, *argv)
    assert code == 0, err
    report = json.loads((out / "ablation.json").read_text())
    assert [cell["cell"] for cell in report["cells"]] == [
        "model.dropout_rate=0.0",
        "model.dropout_rate=0.5",
    ]
    for cell in report["cells"]:
        assert cell["n"] == 2 and len(cell["values"]) == 2 and cell["ci95"] is not None
        assert cell["mean"] == pytest.approx(sum(cell["values"]) / 2)
    assert report["cells"][0]["diff"] == 0.0
    assert (out / "ablation.png").read_bytes().startswith(b"\x89PNG")
    assert "| model.dropout_rate=0.5 |" in printed
    # Run again: nothing is trained twice, the report is the same.
    code, printed, _ = run_cli(capsys, *argv)
    assert code == 0 and printed.count("finished earlier") == 4
    assert json.loads((out / "ablation.json").read_text()) == report
    # Another grid in the same directory is refused before anything runs.
    other = [*argv[:4], "model.dropout_rate=0.0,0.3", *argv[5:]]
    code, _, err = run_cli(capsys, *other)
    assert code == 2 and "holds another ablation" in err


def test_bad_fields_are_refused_before_any_run(tmp_path, capsys):
    out = tmp_path / "never"
    base = ("ablate", "--config", QUICK, "--seeds", "0", "--dir", str(out))
    code, _, err = run_cli(capsys, *base, "--vary", "model.dropout_rat=0.0,0.5")
    assert code == 2 and "Did you mean: model.dropout_rate" in err, err
    code, _, err = run_cli(capsys, *base, "--vary", "model.dropout_rate=0.0,2.0")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(capsys, *base, "--vary", "model.dropout_rate=0,1", "--workers", "0")
    assert code == 2 and "--workers" in err
    assert not out.exists()
