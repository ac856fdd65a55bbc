"""The verdict interval's coverage on simulated runs with a known ratio, through the analysis code the reports
use (scripts/coverage.py prints the same numbers, and the old one-level interval's beside them)."""

from __future__ import annotations

import math

import pytest

from artifact.analysis.simulation import Scenario, coverage

REPLICATIONS = 400
# Monte Carlo standard error of a 95% coverage estimate from 400 replications is 0.011; three of them is the band.
BAND = 3 * math.sqrt(0.95 * 0.05 / REPLICATIONS)


@pytest.mark.parametrize("scenario", [
    # The synthetic GPU run: 30 documents x 2 rounds, the time ratio varying 5% between documents, 0.5% drift per
    # model and round (not shared between models: the harder case of one model per block).
    Scenario(rounds=2, units=30, unit_spread=0.05, block_drift=0.005, cell_noise=0.002),
    # Drift dominates (the tokens/s-like case where one-level intervals collapsed to ~26% coverage): 12 units x 3 rounds.
    Scenario(rounds=3, units=12, unit_spread=0.005, block_drift=0.01, cell_noise=0.002),
], ids=["gpu-design-2x30", "drift-dominated-3x12"])
def test_verdict_interval_covers_the_true_ratio_at_95_percent(scenario: Scenario) -> None:
    result = coverage(scenario, REPLICATIONS)
    assert abs(result["coverage"] - 0.95) <= BAND, result
