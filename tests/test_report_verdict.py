"""The verdict section of both reports from analysed fixed-text records: the combined verdict, the marker of an
override, the estimator formula, per-round ratios, the A/A noise floor, completeness and the paper's value."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from artifact.analysis import analyse
from artifact.analysis.simulation import Scenario, simulate_records
from artifact.claims import get_claim
from artifact.config import load_config, parse_overrides
from artifact.cost import cost_log
from artifact.report import render

CLAIM = get_claim("R-2")
FIXED = replace(CLAIM, verdict=replace(CLAIM.verdict, mode="fixed_text", metric="ja_chars_per_s"))


def full_results(ratio: float, *, allow_confounded: bool = False, units: int = 12) -> dict:
    loaded = load_config("smoke", parse_overrides(["analysis.bootstrap_resamples=200"]))
    config = replace(loaded, trials=replace(loaded.trials, modes=("fixed_text",), measured=2),
                     analysis=replace(loaded.analysis, allow_confounded=allow_confounded))
    rows = simulate_records(Scenario(ratio=ratio, rounds=2, units=units, unit_spread=0.03), np.random.default_rng(5))
    rows += [dict(row, model="tiny-baseline-twin", record_id=row["record_id"] + "-twin", e2e_s=row["e2e_s"] * 1.004)
             for row in rows if row["model"] == "tiny-baseline"]
    facts = {"parameter_count": 1000}
    confounds = {"tiny-baseline": {"confounded": True, "summary": "architecture differs", "candidate": facts,
                                   "baseline": facts, "parameter_gap_total": 0.0, "parameter_gap_outside_embeddings": 0.0}}
    results = analyse(rows, config, FIXED, confounds=confounds if allow_confounded else None)
    results.update({"run": {"directory": "x", "config_name": "smoke", "smoke": True, "description": "", "fingerprint": "f",
                            "started": "now"},
                    "config": config.to_dict(), "engine": None, "models_loaded": {}, "token_efficiency": None,
                    "environment": None, "telemetry": [], "noise_warnings": [], "roofline": None,
                    "cost": cost_log([{"phase": "measure", "seconds": 1.0}], config, accelerator=False)})
    return results


def test_markdown_verdict_section_says_everything_a_reviewer_needs() -> None:
    report = render(full_results(1.9, allow_confounded=True), "md")
    verdict = report[report.index("## Verdict"):report.index("## The claim")]
    assert "**Claim verdict: PASS (confounded; override; smoke)**" in verdict
    assert "| tiny-baseline | **PASS (confounded; override; smoke)** |" in verdict
    assert "intersection-union" in verdict and "12 x 2" in verdict and "outside the interval" in verdict
    assert "t_baseline(r, d)" in verdict and "Per-round ratios vs tiny-baseline: round 0 " in verdict
    assert "**Noise floor (A/A):** tiny-baseline-twin vs tiny-baseline" in verdict and "quiet" in verdict
    assert "**Completeness:** 72 of 72 planned generations measured (complete" in verdict


def test_inconclusive_report_gives_sample_size_advice_and_latex_renders() -> None:
    results = full_results(1.72, units=6)
    report = render(results, "md")
    assert "INCONCLUSIVE" in report and "**Sample size (vs tiny-baseline):** At the observed ratio" in report
    assert "documents x" in report and "inside the interval" in report
    tex = render(results, "tex")
    assert r"\textbf{Claim verdict: INCONCLUSIVE (few units; smoke)}" in tex and "Noise floor (A/A)" in tex
