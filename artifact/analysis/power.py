"""Sample size: how many units (documents, prompts) and rounds would make the verdict decisive at the effect
this run observed, from the variance components of its own interval (or a pilot run's).

Right for the design: the per-unit component shrinks only with more DISTINCT units. With greedy decoding or
fixed text, a unit measured again in another round gives the same work; it averages timing noise (the round
and cell components) and nothing else, so rounds beyond a few buy little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy import stats as scipy_stats

from artifact.stats import variance_of_mean

MAX_UNITS = 100_000
DEFAULT_POWER = 0.8


def expected_df(components: Mapping[str, float], rounds: int, units: int) -> float:
    """Satterthwaite degrees of freedom the crossed interval would have with `rounds` x `units` cells, from the
    expected mean squares of the same variance components."""
    cell, round_, unit = components["cell"], components["round"], components["unit"]
    terms = []
    if rounds > 1:
        terms.append((units * round_ + cell, rounds - 1))
    if units > 1:
        terms.append((rounds * unit + cell, units - 1))
    if rounds > 1 and units > 1:
        terms.append((cell, (rounds - 1) * (units - 1)))
    total = variance_of_mean(components, rounds, units) * rounds * units
    denominator = sum(ms ** 2 / df for ms, df in terms if ms > 0)
    return max(1.0, total ** 2 / denominator) if denominator > 0 else math.inf


def decisive(components: Mapping[str, float], rounds: int, units: int, margin: float, confidence: float,
             power: float) -> bool:
    """Would an interval of this design exclude the threshold with probability `power` at this margin?"""
    se = math.sqrt(variance_of_mean(components, rounds, units))
    if se == 0:
        return True
    quantile = scipy_stats.t.ppf(0.5 + confidence / 2, expected_df(components, rounds, units))
    return (quantile + scipy_stats.norm.ppf(power)) * se <= margin


def units_needed(components: Mapping[str, float], rounds: int, margin: float, confidence: float, power: float) -> int | None:
    """Fewest units that make the verdict decisive at `rounds` rounds; None when no number of units can (the round
    component alone is too large, or the observed ratio sits on the threshold)."""
    if margin <= 0 or not decisive(components, rounds, MAX_UNITS, margin, confidence, power):
        return None
    low, high = 2, MAX_UNITS
    while low < high:  # decisiveness grows with units: binary search
        middle = (low + high) // 2
        if decisive(components, rounds, middle, margin, confidence, power):
            high = middle
        else:
            low = middle + 1
    return low


def sample_size(ratio: Mapping[str, Any], threshold: float, *, power: float = DEFAULT_POWER,
                unit_label: str = "units") -> dict[str, Any] | None:
    """Advice from a verdict ratio (a crossed interval's dict with its variance components)."""
    components = ratio.get("components")
    if not components or not ratio.get("n_rounds"):
        return None
    confidence = ratio["confidence"]
    rounds, units = int(ratio["n_rounds"]), int(ratio["n"])
    margin = abs(ratio["estimate"] - threshold)
    total = variance_of_mean(components, rounds, units)
    shares = ({key: (components[key] / divisor) / total for key, divisor in
               (("round", rounds), ("unit", units), ("cell", rounds * units))} if total > 0 else None)
    options = [{"rounds": r, "units": units_needed(components, r, margin, confidence, power)}
               for r in sorted({max(2, rounds), max(2, rounds) + 1, 2 * max(2, rounds)})]
    reachable = [option for option in options if option["units"] is not None]
    if margin == 0:
        advice = "The observed ratio equals the threshold: no sample size makes the verdict decisive."
    elif not reachable:
        advice = ("No number of " + unit_label + " makes the verdict decisive at these rounds: the variation between "
                  "rounds dominates; more rounds (or a quieter machine) are needed.")
    else:
        best = reachable[0]
        advice = (f"At the observed ratio {ratio['estimate']:.4g} (threshold {threshold:g}, margin {margin:.3g}), a verdict "
                  f"decisive with {power:.0%} probability needs about {best['units']} {unit_label} x {best['rounds']} "
                  f"rounds (this run: {units} x {rounds}). More distinct {unit_label} shrink the between-{unit_label} "
                  f"variance; repeating the same {unit_label} in more rounds only averages timing noise (greedy decoding "
                  f"and fixed text repeat the same work).")
    return {"power": power, "observed_ratio": ratio["estimate"], "threshold": threshold, "margin": margin,
            "current": {"units": units, "rounds": rounds}, "options": options, "variance_share": shares,
            "advice": advice}
