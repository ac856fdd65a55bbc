"""Simulated runs with a known answer, as trial records: the coverage check (tests/test_coverage.py and
scripts/coverage.py) feeds them to the same analysis code the reports use.

Model of a fixed-text run: document d costs the baseline w_d seconds and the candidate w_d * q_d, with
q_d = exp(N(-s^2/2, s^2)) / ratio (its mean is exactly 1 / ratio, so the population ratio of total times is
exactly `ratio`); every model's every round is multiplied by a drift factor exp(N(-b^2/2, b^2)) (block drift:
a model measured in another block, load or clock state), every generation by exp(N(-c^2/2, c^2)) (cell noise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from artifact.analysis.core import judged_comparisons  # the decision code of analyse(): nothing here is simulated
from artifact.analysis.units import cells, measured_records
from artifact.claims import Claim, get_claim
from artifact.config import ExperimentConfig, load_config
from artifact.stats import paired_ratio_of_means


@dataclass(frozen=True)
class Scenario:
    ratio: float = 1.78  # true baseline time / candidate time (= characters/s ratio on identical text)
    rounds: int = 2
    units: int = 30
    unit_spread: float = 0.05  # s: spread of the per-document time ratio (the tokenizers' ratio varies by document)
    block_drift: float = 0.005  # b: per model and round
    cell_noise: float = 0.002  # c: per generation
    seconds_per_unit: float = 1.3
    shared_drift: bool = False  # True: drift hits every model of a round alike (interleaved, nothing else varies)


def _lognormal(rng: np.random.Generator, sigma: float, size: Any) -> np.ndarray:
    return np.exp(rng.normal(-sigma ** 2 / 2, sigma, size))


def simulate_records(scenario: Scenario, rng: np.random.Generator, *, candidate: str = "tiny-expanded",
                     baseline: str = "tiny-baseline", mode: str = "fixed_text") -> list[dict[str, Any]]:
    """Records of one simulated run (both models, every round and document), in the trials.jsonl format."""
    work = scenario.seconds_per_unit * rng.uniform(0.8, 1.2, scenario.units)
    share = _lognormal(rng, scenario.unit_spread, scenario.units) / scenario.ratio
    chars = rng.integers(120, 160, scenario.units)
    rows = []
    for trial in range(scenario.rounds):
        shared = _lognormal(rng, scenario.block_drift, 1)[0]
        for model, cost in ((baseline, work), (candidate, work * share)):
            drift = shared if scenario.shared_drift else _lognormal(rng, scenario.block_drift, 1)[0]
            times = cost * drift * _lognormal(rng, scenario.cell_noise, scenario.units)
            for unit in range(scenario.units):
                rows.append({
                    "record_id": f"measure-t{trial}-{model}-{mode}-d{unit}", "phase": "measure", "trial": trial,
                    "model": model, "mode": mode, "prompt_id": f"d{unit}", "variant": "default",
                    "position": 0, "output_chars": int(chars[unit]), "output_japanese_chars": int(chars[unit]),
                    "output_tokens": max(1, int(round(times[unit] / 0.005))), "e2e_s": float(times[unit]),
                    "ttft_s": 0.02, "error": None,
                })
    return rows


def fixed_text_setup(rounds: int) -> tuple[ExperimentConfig, Claim]:
    """The smoke pair judged on fixed-text timing over `rounds` rounds (the claim's threshold and paper value)."""
    claim = get_claim("R-2")
    claim = replace(claim, verdict=replace(claim.verdict, mode="fixed_text", metric="ja_chars_per_s"))
    base = load_config("smoke")
    config = replace(base, models=tuple(model for model in base.models if model.role != "control"),
                     trials=replace(base.trials, modes=("fixed_text",), measured=rounds),
                     analysis=replace(base.analysis, noise_floor=()))
    return config, claim


def old_interval(records: list[dict], seed: int) -> tuple[float, float]:
    """Before issue 10: per-unit values averaged over rounds, BCa bootstrap over units (one level)."""
    kept = measured_records(records)
    per_unit = {}
    for model in ("tiny-baseline", "tiny-expanded"):
        table = cells(kept, model, "fixed_text")
        units = sorted({unit for _, unit in table})
        per_unit[model] = np.array([np.mean([table[key]["time"] for key in table if key[1] == unit]) for unit in units])
    interval = paired_ratio_of_means(per_unit["tiny-baseline"], per_unit["tiny-expanded"], seed=seed, n_resamples=2000)
    return interval.low, interval.high


def coverage(scenario: Scenario, replications: int, *, seed: int = 20231219, old: bool = False) -> dict[str, float]:
    """Share of replications whose verdict interval contains the true ratio (and, with `old`, the old one's)."""
    config, claim = fixed_text_setup(scenario.rounds)
    rng = np.random.default_rng(seed)
    covered = covered_old = decisive = 0
    widths = []
    for replication in range(replications):
        records = simulate_records(scenario, rng)
        comparisons, _, _ = judged_comparisons(records, config, claim)
        ratio = comparisons[0]["verdict"]["ratio"]
        covered += ratio["low"] <= scenario.ratio <= ratio["high"]
        decisive += comparisons[0]["verdict"]["statistical_outcome"] in ("PASS", "FAIL")
        widths.append(ratio["high"] - ratio["low"])
        if old:
            low, high = old_interval(records, replication)
            covered_old += low <= scenario.ratio <= high
    result = {"coverage": covered / replications, "decisive": decisive / replications,
              "median_width": float(np.median(widths))}
    if old:
        result["coverage_old"] = covered_old / replications
    return result
