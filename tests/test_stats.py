"""Bootstrap intervals: exact estimates, coverage near the nominal rate, verdict rule."""

from __future__ import annotations

import numpy as np
import pytest

from artifact.claims import FAIL, INCONCLUSIVE, PASS, verdict
from artifact.stats import median_ci, paired_ratio_of_means, projected_speed_ratio


def test_paired_ratio_estimate_is_ratio_of_means() -> None:
    candidate = np.array([2.0, 4.0, 6.0, 8.0])
    baseline = np.array([1.0, 1.0, 2.0, 4.0])
    interval = paired_ratio_of_means(candidate, baseline, seed=0, n_resamples=2000)
    assert interval.estimate == pytest.approx(20.0 / 8.0)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.method == "BCa" and interval.n == 4


def test_pairing_removes_shared_prompt_effect() -> None:
    """Prompts that are slow for both models cancel when paired: the interval is narrow around 1.5."""
    rng = np.random.default_rng(3)
    prompt_effect = rng.uniform(1, 10, size=30)
    baseline = prompt_effect * rng.normal(1.0, 0.01, size=30)
    candidate = 1.5 * prompt_effect * rng.normal(1.0, 0.01, size=30)
    interval = paired_ratio_of_means(candidate, baseline, seed=1, n_resamples=4000)
    assert 1.48 < interval.low < interval.high < 1.52


def test_paired_ratio_ci_covers_known_ratio_at_about_nominal_rate() -> None:
    rng = np.random.default_rng(20231219)
    true_ratio, draws, covered = 1.78, 300, 0
    for draw in range(draws):
        prompt_effect = rng.lognormal(0, 0.3, size=30)
        baseline = prompt_effect * rng.lognormal(0, 0.1, size=30)
        candidate = true_ratio * prompt_effect * rng.lognormal(0, 0.1, size=30)
        # The true ratio of means is 1.78 exactly in expectation: both noises have the same distribution.
        interval = paired_ratio_of_means(candidate, baseline, seed=draw, n_resamples=1000)
        covered += interval.low <= true_ratio <= interval.high
    assert 0.88 <= covered / draws <= 0.99


def test_median_ci_covers_true_median() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for draw in range(200):
        sample = rng.exponential(1.0, size=40)
        interval = median_ci(sample, seed=draw, n_resamples=1000)
        covered += interval.low <= np.log(2) <= interval.high
    assert 0.88 <= covered / 200 <= 0.99


def test_degenerate_samples_give_point_intervals() -> None:
    interval = paired_ratio_of_means([3.0, 3.0, 3.0], [1.5, 1.5, 1.5], seed=0)
    assert (interval.estimate, interval.low, interval.high, interval.method) == (2.0, 2.0, 2.0, "degenerate")
    assert median_ci([5.0], seed=0).method == "degenerate"


def test_paired_ratio_rejects_unpaired_or_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_ratio_of_means([1.0, 2.0], [1.0], seed=0)
    with pytest.raises(ValueError, match="NaN"):
        paired_ratio_of_means([1.0, float("nan")], [1.0, 1.0], seed=0)


def test_projected_ratio_combines_speed_and_token_counts() -> None:
    speed_c = np.array([10.0, 11.0, 9.0, 10.0])
    speed_b = np.array([10.0, 10.0, 10.0, 10.0])
    tokens_c = np.array([56.0, 112.0, 56.2])
    tokens_b = np.array([100.0, 200.0, 100.0])
    interval = projected_speed_ratio(speed_c, speed_b, tokens_c, tokens_b, seed=0, n_resamples=2000)
    assert interval.estimate == pytest.approx(1.0 * 400.0 / 224.2)
    assert interval.low <= interval.estimate <= interval.high


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(1.71, 1.9, PASS), (1.70, 1.9, PASS), (1.2, 1.69, FAIL), (1.6, 1.8, INCONCLUSIVE), (1.0, 1.70, INCONCLUSIVE)],
)
def test_verdict_rule(low: float, high: float, expected: str) -> None:
    assert verdict(low, high, 1.70) == expected


def test_crossed_interval_exact_values_when_only_rounds_vary() -> None:
    """Round effects +-0.1, nothing else: R = 1, MS_round = 3 * 0.02 = 0.06, Var = 0.06 / 6, one degree of freedom."""
    from scipy import stats as scipy_stats

    from artifact.stats import crossed_ratio_of_sums

    numerator = np.array([[1.1, 1.1, 1.1], [0.9, 0.9, 0.9]])
    interval = crossed_ratio_of_sums(numerator, np.ones((2, 3)))
    quantile = scipy_stats.t.ppf(0.975, 1)
    assert interval.estimate == pytest.approx(1.0)
    assert interval.standard_error == pytest.approx(0.1) and interval.df == pytest.approx(1.0)
    assert (interval.low, interval.high) == pytest.approx((1 - quantile * 0.1, 1 + quantile * 0.1))
    assert interval.components == pytest.approx({"round": 0.02, "unit": 0.0, "cell": 0.0})  # (0.1^2 + 0.1^2) / (2 - 1)
    assert (interval.n, interval.n_rounds) == (3, 2)


def test_crossed_interval_exact_values_when_only_units_vary() -> None:
    """Unit effects +-0.2 repeated in 3 rounds: MS_unit = 3 * 2 * 0.04 = 0.24, Var = 0.24 / 6, df = 1."""
    from artifact.stats import crossed_ratio_of_sums

    numerator = np.array([[1.2, 0.8]] * 3)
    interval = crossed_ratio_of_sums(numerator, np.ones((3, 2)))
    assert interval.standard_error == pytest.approx(0.2) and interval.df == pytest.approx(1.0)
    assert interval.components == pytest.approx({"round": 0.0, "unit": 0.08, "cell": 0.0})


def test_crossed_interval_degenerate_and_one_level_cases() -> None:
    from artifact.stats import crossed_ratio_of_sums

    flat = crossed_ratio_of_sums([[2.0, 4.0], [2.0, 4.0]], [[1.0, 2.0], [1.0, 2.0]])
    assert (flat.estimate, flat.low, flat.high) == (2.0, 2.0, 2.0) and flat.method.startswith("degenerate")
    one_round = crossed_ratio_of_sums([[1.0, 2.0, 3.0]], [[1.0, 1.0, 1.0]])
    assert "ONE round" in one_round.method and one_round.df == pytest.approx(2.0)
    one_unit = crossed_ratio_of_sums([[1.0], [1.2], [1.1]], [[1.0], [1.0], [1.0]])
    assert one_unit.method.startswith("rounds only") and one_unit.df == pytest.approx(2.0)
    with pytest.raises(ValueError, match="differ in shape"):
        crossed_ratio_of_sums([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="positive denominators"):
        crossed_ratio_of_sums([[1.0]], [[0.0]])
