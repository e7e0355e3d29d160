"""Statistics over seeds: mean, sample standard deviation, a 95% confidence interval of the mean
(Student's t with n - 1 degrees of freedom) and the difference from a baseline."""

import math
from typing import Any

from scipy import stats as scipy_stats


def summarize(values: list[float]) -> dict[str, Any]:
    """{'n', 'mean', 'std', 'ci95'} of one cell's values; std and ci95 are None for one value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def with_differences(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cell's summary plus `diff`: its mean minus the first (baseline) cell's."""
    baseline = cells[0]["mean"]
    return [{**cell, "diff": cell["mean"] - baseline} for cell in cells]
