"""`jaxdl compare` on two finished runs (the session's quick CNN and quick MLP): final metrics,
steps/s, the config fields that differ, overlaid curves, and bad input."""

from jaxdl.studies import compare
from tests.test_cli_errors import run_cli


def test_compare_lists_metrics_differences_and_plots_curves(
    reference_run, finished_run, tmp_path, capsys
):
    out = tmp_path / "curves.png"
    code, printed, err = run_cli(
        capsys,
        "compare",
        str(reference_run),
        str(finished_run),
        "--metric",
        "val/accuracy",
        "--out",
        str(out),
    )
    assert code == 0, err
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    metrics = "test/accuracy | test/balanced_accuracy | test/ece | test/loss | test/macro_f1"
    assert rows[0].startswith(f"| run | {metrics} | steps | steps/s |")
    assert any(line.startswith('| model.name | "cnn" | "mlp" |') for line in rows)
    assert out.read_bytes().startswith(b"\x89PNG")
    runs = [compare.read_run(reference_run), compare.read_run(finished_run)]
    fields = compare.differing_fields(runs)
    assert fields["model.name"] == ["cnn", "mlp"] and "seed" not in fields
    steps, values = compare.curve(reference_run, "val/accuracy")
    assert steps == sorted(steps) and len(steps) == len(values) > 0


def test_compare_bad_input_exits_2(reference_run, tmp_path, capsys):
    def fails(*argv: str, match: str) -> None:
        code, _, err = run_cli(capsys, "compare", *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and match in err, err

    fails(str(tmp_path), match="not found")
    fails(str(reference_run), "--metric", "accuracy", match="SPLIT/NAME")
    out = tmp_path / "x.png"
    fails(str(reference_run), "--metric", "val/nothing", "--out", str(out), match="no run logged")
    out.write_text("mine")
    fails(str(reference_run), "--out", str(out), match="already exists")
    assert out.read_text() == "mine"
