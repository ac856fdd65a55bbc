"""Confidence intervals by bootstrap (scipy.stats.bootstrap), seeded so a report can be re-derived exactly."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval and the settings that produced it."""

    estimate: float
    low: float
    high: float
    method: str
    confidence: float
    n: int
    n_resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what}: expected a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return array


def _degenerate(estimate: float, n: int, seed: int, n_resamples: int, confidence: float) -> Interval:
    # With one sample, or all samples equal, every resample gives the same statistic: the interval is a point.
    return Interval(estimate, estimate, estimate, "degenerate", confidence, n, n_resamples, seed)


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    *,
    paired: bool,
    method: str,
    seed: int,
    n_resamples: int,
    confidence: float,
) -> tuple[float, float, str]:
    """Run scipy's bootstrap; fall back from BCa to percentile when BCa cannot be computed."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        # Degenerate data makes BCa warn and return NaN; the NaN is handled below (percentile), so the
        # warning would only alarm the reader.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=getattr(scipy_stats, "DegenerateDataWarning", RuntimeWarning))
        result = scipy_stats.bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=n_resamples,
                                       confidence_level=confidence, method=method, random_state=rng)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if method == "BCa" and not (np.isfinite(low) and np.isfinite(high)):
        # BCa needs a non-zero jackknife spread; near-constant data makes it NaN, percentile stays defined.
        return _bootstrap(
            data, statistic, paired=paired, method="percentile", seed=seed, n_resamples=n_resamples,
            confidence=confidence,
        )
    return low, high, method


def _median(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(sample, axis=axis)


def _ratio_of_means(candidate: np.ndarray, baseline: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(candidate, axis=axis) / np.mean(baseline, axis=axis)


def median_ci(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Median with a percentile-bootstrap interval.

    Percentile rather than BCa: the median's jackknife values are nearly all equal, so BCa's acceleration
    estimate is unstable for it.
    """
    sample = _as_array(values, "median_ci values")
    estimate = float(np.median(sample))
    if sample.size < 2 or np.ptp(sample) == 0:
        return _degenerate(estimate, sample.size, seed, n_resamples, confidence)
    low, high, method = _bootstrap(
        (sample,), _median, paired=False, method="percentile", seed=seed, n_resamples=n_resamples,
        confidence=confidence,
    )
    return Interval(estimate, low, high, method, confidence, int(sample.size), n_resamples, seed)


def paired_ratio_of_means(
    candidate: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    seed: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """mean(candidate) / mean(baseline) over paired units (same prompt or document), BCa interval.

    Pairs are resampled together, so what the two share (a prompt that is slow for both) cancels.
    """
    cand = _as_array(candidate, "paired_ratio_of_means candidate")
    base = _as_array(baseline, "paired_ratio_of_means baseline")
    if cand.shape != base.shape:
        raise ValueError(f"paired samples differ in length: candidate {cand.size}, baseline {base.size}")
    if np.any(base <= 0) or np.any(cand < 0):
        raise ValueError("paired_ratio_of_means needs positive baseline values and non-negative candidate values")
    estimate = float(cand.mean() / base.mean())
    if cand.size < 2 or (np.ptp(cand) == 0 and np.ptp(base) == 0):
        return _degenerate(estimate, cand.size, seed, n_resamples, confidence)
    low, high, method = _bootstrap(
        (cand, base), _ratio_of_means, paired=True, method="BCa", seed=seed, n_resamples=n_resamples,
        confidence=confidence,
    )
    return Interval(estimate, low, high, method, confidence, int(cand.size), n_resamples, seed)


def projected_speed_ratio(
    candidate_speed: Sequence[float] | np.ndarray,
    baseline_speed: Sequence[float] | np.ndarray,
    candidate_tokens: Sequence[float] | np.ndarray,
    baseline_tokens: Sequence[float] | np.ndarray,
    *,
    seed: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """(tokens/s ratio over paired prompts) x (baseline / candidate token count over paired documents).

    Japanese characters per second projected from tokens per second: at the same text, characters per token
    is inversely proportional to the token count. Prompts and documents are resampled independently, so the
    interval carries the uncertainty of both the timing and the tokenizer measurement.
    """
    speed_c = _as_array(candidate_speed, "candidate speed")
    speed_b = _as_array(baseline_speed, "baseline speed")
    tokens_c = _as_array(candidate_tokens, "candidate token counts")
    tokens_b = _as_array(baseline_tokens, "baseline token counts")
    if speed_c.shape != speed_b.shape or tokens_c.shape != tokens_b.shape:
        raise ValueError("projected_speed_ratio: paired samples must have equal lengths")

    def statistic(prompt_index: np.ndarray, document_index: np.ndarray, axis: int = -1) -> np.ndarray:
        prompts = prompt_index.astype(int)
        documents = document_index.astype(int)
        speed = speed_c[prompts].mean(axis=axis) / speed_b[prompts].mean(axis=axis)
        return speed * tokens_b[documents].sum(axis=axis) / tokens_c[documents].sum(axis=axis)

    prompt_index = np.arange(speed_c.size)
    document_index = np.arange(tokens_c.size)
    estimate = float(statistic(prompt_index, document_index))
    if speed_c.size < 2 or tokens_c.size < 2:
        return _degenerate(estimate, int(speed_c.size), seed, n_resamples, confidence)
    low, high, method = _bootstrap(
        (prompt_index, document_index), statistic, paired=False, method="BCa", seed=seed, n_resamples=n_resamples,
        confidence=confidence,
    )
    return Interval(estimate, low, high, method, confidence, int(speed_c.size), n_resamples, seed)


@dataclass(frozen=True)
class CrossedInterval:
    """A ratio of sums over a rounds x units table with an interval that carries both levels' variation.

    `components` are the estimated variances (on the ratio's scale, per round, per unit and per cell) that
    the power advice reuses to say how many units or rounds a decisive verdict would need.
    """

    estimate: float
    low: float
    high: float
    method: str
    confidence: float
    n: int  # units (documents or prompts) paired in every round
    n_rounds: int
    df: float
    standard_error: float
    components: dict[str, float]
    n_resamples: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CROSSED_METHOD = "two-way random effects (rounds x units), linearised ratio, Satterthwaite t"


def _table(values: Sequence[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
    table = np.asarray(values, dtype=float)
    if table.ndim != 2 or table.size == 0:
        raise ValueError(f"{what}: expected a rounds x units table (2-D, non-empty), got shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return table


def variance_of_mean(components: Mapping[str, float], rounds: int, units: int) -> float:
    """Variance of the grand mean of a rounds x units table with crossed random round, unit and cell effects."""
    return components["round"] / rounds + components["unit"] / units + components["cell"] / (rounds * units)


def crossed_ratio_of_sums(
    numerator: Sequence[Sequence[float]] | np.ndarray,
    denominator: Sequence[Sequence[float]] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CrossedInterval:
    """sum(numerator) / sum(denominator) over a rounds x units table (rows: rounds, columns: units), paired cell
    by cell, with an interval that treats rounds and units as two crossed random samples.

    Why not a bootstrap: a run has 2-4 rounds, and a percentile bootstrap over so few clusters under-covers
    badly (resampling 3 rounds with replacement sees at most 3 distinct values; its spread underestimates the
    round variance by (R-1)/R and ignores the t quantile). The classical answer for a crossed design is exact
    enough here: linearise the ratio, u = (numerator - R * denominator) / mean(denominator), so that
    R_hat - R ~ mean(u); split u's variation by two-way ANOVA into round, unit and cell mean squares;
    Var(mean u) = (MS_round + MS_unit - MS_cell) / (rounds * units), each variance component floored at zero;
    Satterthwaite's degrees of freedom; a t interval. With one round the round level cannot be estimated
    (the method says so); with one unit only rounds vary. tests/test_coverage.py checks the coverage on
    simulated runs with known ratio, unit spread and block drift.
    """
    top = _table(numerator, "numerator")
    bottom = _table(denominator, "denominator")
    if top.shape != bottom.shape:
        raise ValueError(f"paired tables differ in shape: numerator {top.shape}, denominator {bottom.shape}")
    if np.any(bottom <= 0) or np.any(top < 0):
        raise ValueError("crossed_ratio_of_sums needs positive denominators and non-negative numerators")
    rounds, units = top.shape
    estimate = float(top.sum() / bottom.sum())
    u = (top - estimate * bottom) / bottom.mean()
    row = u.mean(axis=1, keepdims=True)
    col = u.mean(axis=0, keepdims=True)
    grand = float(u.mean())
    ms_round = units * float(((row - grand) ** 2).sum()) / (rounds - 1) if rounds > 1 else 0.0
    ms_unit = rounds * float(((col - grand) ** 2).sum()) / (units - 1) if units > 1 else 0.0
    if rounds > 1 and units > 1:
        ms_cell = float(((u - row - col + grand) ** 2).sum()) / ((rounds - 1) * (units - 1))
        components = {"round": max(0.0, (ms_round - ms_cell) / units), "unit": max(0.0, (ms_unit - ms_cell) / rounds),
                      "cell": ms_cell}
        # Satterthwaite on the mean squares that make up the (floored) variance.
        terms = [(ms_cell, (rounds - 1) * (units - 1), 1 - (ms_round > ms_cell) - (ms_unit > ms_cell))]
        if ms_round > ms_cell:
            terms.append((ms_round, rounds - 1, 1))
        if ms_unit > ms_cell:
            terms.append((ms_unit, units - 1, 1))
        method = CROSSED_METHOD
    elif rounds > 1:  # one unit: only rounds vary (throughput mode: one batch per round)
        components = {"round": ms_round, "unit": 0.0, "cell": 0.0}
        terms = [(ms_round, rounds - 1, 1)]
        method = "rounds only (one unit), linearised ratio, t"
    elif units > 1:
        components = {"round": 0.0, "unit": ms_unit, "cell": 0.0}
        terms = [(ms_unit, units - 1, 1)]
        method = "units only (ONE round: drift between rounds is not in this interval), linearised ratio, t"
    else:
        return CrossedInterval(estimate, estimate, estimate, "degenerate (one cell)", confidence, units, rounds, 0.0,
                               0.0, {"round": 0.0, "unit": 0.0, "cell": 0.0})
    variance = variance_of_mean(components, rounds, units)
    if variance <= 0:
        return CrossedInterval(estimate, estimate, estimate, "degenerate (no variation)", confidence, units, rounds,
                               float("inf"), 0.0, components)
    # Each term's coefficient in (rounds * units) * variance is +1 or -1 (the cell term after flooring).
    denominator_df = sum((sign * ms) ** 2 / df for ms, df, sign in terms if sign)
    numerator_df = (variance * rounds * units) ** 2
    df = numerator_df / denominator_df if denominator_df > 0 else float("inf")
    df = max(1.0, min(df, float(sum(df_term for _, df_term, sign in terms if sign))))
    se = float(np.sqrt(variance))
    quantile = float(scipy_stats.t.ppf(0.5 + confidence / 2, df))
    return CrossedInterval(estimate, estimate - quantile * se, estimate + quantile * se, method, confidence, units,
                           rounds, float(df), se, components)


def product_of_ratios(first: CrossedInterval, second: CrossedInterval, *, confidence: float = DEFAULT_CONFIDENCE) -> CrossedInterval:
    """first x second for two independent ratio estimates (e.g. tokens/s ratio x token-count ratio): relative
    standard errors add in quadrature on the log scale, Satterthwaite degrees of freedom, t interval."""
    estimate = first.estimate * second.estimate
    parts = [((ratio.standard_error / ratio.estimate) ** 2, ratio.df) for ratio in (first, second) if ratio.estimate > 0]
    variance = sum(part for part, _ in parts)
    if variance <= 0:
        return replace(first, estimate=estimate, low=estimate, high=estimate, method="degenerate (no variation)")
    df = variance ** 2 / sum(part ** 2 / df for part, df in parts if part > 0 and np.isfinite(df)) if any(
        part > 0 and np.isfinite(df) for part, df in parts) else float("inf")
    quantile = float(scipy_stats.t.ppf(0.5 + confidence / 2, max(1.0, df)))
    spread = quantile * float(np.sqrt(variance))
    return CrossedInterval(estimate, estimate * float(np.exp(-spread)), estimate * float(np.exp(spread)),
                           f"product of two ratios ({first.method}; {second.method}), log scale, Satterthwaite t",
                           confidence, first.n, first.n_rounds, float(df), estimate * float(np.sqrt(variance)),
                           {"round": first.components["round"], "unit": first.components["unit"],
                            "cell": first.components["cell"]})
