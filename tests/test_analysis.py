"""Analysis on hand-built and simulated records with known answers: verdict rules, completeness, several
baselines, override marker, noise floor, pairing, resumed batches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from artifact.analysis import ReferenceCorpus, analyse, measured_records, unit_values
from artifact.analysis.simulation import Scenario, simulate_records
from artifact.claims import combined_verdict, get_claim
from artifact.config import ModelSpec, load_config, parse_overrides

CLAIM = get_claim("R-2")
FIXED = replace(CLAIM, verdict=replace(CLAIM.verdict, mode="fixed_text", metric="ja_chars_per_s"))
LATENCY = replace(CLAIM, verdict=replace(CLAIM.verdict, mode="latency", metric="ja_chars_per_s"))  # free generation
TWIN = "tiny-baseline-twin"


def config(**overrides: str):
    pairs = {"trials.modes": '["latency"]', "analysis.bootstrap_resamples": "500", **overrides}
    loaded = load_config("smoke", parse_overrides([f"{key}={value}" for key, value in pairs.items()]))
    # These tests judge the tiny pair alone unless they add the twin back.
    return replace(loaded, models=tuple(model for model in loaded.models if model.role != "control"),
                   analysis=replace(loaded.analysis, noise_floor=()))


def fixed_config(rounds: int = 2, **overrides: str):
    base = config(**overrides)
    return replace(base, trials=replace(base.trials, modes=("fixed_text",), measured=rounds))


def with_twin(experiment, tolerance: float = 0.02):
    twin = ModelSpec(name=TWIN, role="control", builtin="tiny-baseline")
    return replace(experiment, models=(*experiment.models, twin),
                   analysis=replace(experiment.analysis, noise_floor=("tiny-baseline", TWIN), noise_tolerance=tolerance))


def fixed_records(ratio: float = 1.78, rounds: int = 2, units: int = 30, seed: int = 0, **scenario) -> list[dict]:
    return simulate_records(Scenario(ratio=ratio, rounds=rounds, units=units, **scenario), np.random.default_rng(seed))


def records(chars_ratio: float, tokens_ratio: float = 1.0, prompts: int = 12, trials: int = 2, seed: int = 0) -> list[dict]:
    """Latency mode. Baseline: 100 tokens in ~1 s per prompt; candidate: tokens/s x tokens_ratio, chars/s x chars_ratio."""
    rng = np.random.default_rng(seed)
    rows = []
    for trial in range(trials):
        for prompt in range(prompts):
            slowness = rng.uniform(0.8, 1.2)  # a prompt effect both models share
            for model, rate, chars in (("tiny-baseline", 1.0, 100.0), ("tiny-expanded", tokens_ratio, 100.0 * chars_ratio / tokens_ratio)):
                e2e = slowness / rate * rng.normal(1.0, 0.01)
                rows.append({"record_id": f"measure-t{trial}-{model}-latency-p{prompt}", "phase": "measure",
                             "trial": trial, "model": model, "mode": "latency", "prompt_id": f"p{prompt}",
                             "output_tokens": 100, "output_chars": int(round(chars)), "e2e_s": e2e,
                             "ttft_s": 0.01 * e2e, "error": None})
    return rows


def verdict_of(results: dict, baseline: str = "tiny-baseline") -> dict:
    return next(comparison["verdict"] for comparison in results["comparisons"] if comparison["baseline"] == baseline)


def test_fixed_text_estimator_is_the_ratio_of_total_times_and_can_be_recomputed() -> None:
    rows = fixed_records()
    verdict = verdict_of(analyse(rows, fixed_config(), FIXED))
    total = {model: sum(row["e2e_s"] for row in rows if row["model"] == model) for model in ("tiny-baseline", "tiny-expanded")}
    assert verdict["ratio"]["estimate"] == pytest.approx(total["tiny-baseline"] / total["tiny-expanded"], rel=1e-12)
    assert verdict["basis"] == "measured, fixed text" and "t_baseline(r, d)" in verdict["estimator"]
    assert verdict["ratio"]["n"] == 30 and verdict["ratio"]["n_rounds"] == 2
    assert [item["round"] for item in verdict["per_round"]] == [0, 1] and len(verdict["per_unit"]) == 30
    assert verdict["outcome"] == "PASS" and verdict["display"] == "PASS (smoke)" and verdict["few_units"] is False
    assert verdict["paper_value_inside"] is (verdict["ratio"]["low"] <= 1.78 <= verdict["ratio"]["high"])


def test_known_ratio_passes_low_ratio_fails_and_straddling_is_inconclusive_with_advice() -> None:
    assert verdict_of(analyse(fixed_records(1.9), fixed_config(), FIXED))["outcome"] == "PASS"
    failing = verdict_of(analyse(fixed_records(1.4), fixed_config(), FIXED))
    assert failing["outcome"] == "FAIL" and failing["ratio"]["high"] < 1.7 and failing["paper_value_inside"] is False
    straddling = verdict_of(analyse(fixed_records(1.72, units=10, unit_spread=0.05), fixed_config(), FIXED))
    assert straddling["outcome"] == "INCONCLUSIVE"
    power = straddling["power"]
    # More documents, not more rounds of the same documents, is what the advice asks for.
    reachable = [option["units"] for option in power["options"] if option["units"] is not None]
    assert reachable and min(reachable) > 10 and "documents" in power["advice"]


def test_missing_units_make_the_verdict_partial_never_pass() -> None:
    rows = fixed_records(1.9, rounds=2, units=30)
    interrupted = [row for row in rows if not (row["model"] == "tiny-expanded" and row["trial"] == 1)]
    results = analyse(interrupted, fixed_config(), FIXED)
    verdict = verdict_of(results)
    # One round left for the candidate: below the minimum of two rounds -> INSUFFICIENT.
    assert verdict["outcome"] == "INSUFFICIENT" and "2 rounds" in verdict["reason"]
    assert results["completeness"]["status"] == "insufficient"
    assert results["completeness"]["missing"] == [{"model": "tiny-expanded", "mode": "fixed_text", "count": 30,
                                                   "examples": results["completeness"]["missing"][0]["examples"]}]
    # Two documents missing in one round: still 2 x 28 complete cells, but the data are incomplete -> PARTIAL.
    gappy = [row for row in rows if not (row["model"] == "tiny-expanded" and row["trial"] == 1 and row["prompt_id"] in ("d3", "d4"))]
    results = analyse(gappy, fixed_config(), FIXED)
    verdict = verdict_of(results)
    assert verdict["outcome"] == "PARTIAL" and verdict["statistical_outcome"] == "PASS"
    assert "tiny-expanded: 2 of its fixed_text generations" in verdict["reason"]
    assert verdict["ratio"]["n"] == 28 and results["completeness"]["status"] == "partial"
    assert results["summary"]["combined_verdict"] == "PARTIAL"


def test_planned_units_no_model_reached_count_as_missing() -> None:
    rows = fixed_records(1.9, rounds=2, units=10)
    planned = [{"record_id": f"measure-t{t}-{m}-fixed_text-d{u}", "model": m, "mode": "fixed_text", "trial": t,
                "unit": f"d{u}", "variant": "default"} for m in ("tiny-baseline", "tiny-expanded") for t in range(2)
               for u in range(12)]
    results = analyse(rows, fixed_config(), FIXED, planned=planned)
    assert verdict_of(results)["outcome"] == "PARTIAL" and results["completeness"]["planned"] == 48
    assert results["completeness"]["measured"] == 40 and results["completeness"]["planned_from"] == "plan.json"


def test_too_few_units_is_insufficient_and_few_units_are_flagged() -> None:
    tiny = verdict_of(analyse(fixed_records(1.9, units=4), fixed_config(), FIXED))
    assert tiny["outcome"] == "INSUFFICIENT" and "4 paired units" in tiny["reason"] and tiny["few_units"] is True
    few = verdict_of(analyse(fixed_records(1.9, units=6), fixed_config(), FIXED))
    assert few["outcome"] == "PASS" and few["display"] == "PASS (few units; smoke)"
    one_round = verdict_of(analyse(fixed_records(1.9, rounds=1), fixed_config(rounds=1), FIXED))
    assert one_round["outcome"] == "INSUFFICIENT" and "ONE round" in one_round["ratio"]["method"]


def test_override_marker_stays_visible() -> None:
    confounds = {"tiny-baseline": {"confounded": True, "summary": "architecture GPT2LMHeadModel"}}
    results = analyse(fixed_records(1.9), fixed_config(), FIXED, confounds=confounds)
    verdict = verdict_of(results)
    assert verdict["outcome"] == "CONFOUNDED" and verdict["statistical_outcome"] == "PASS"
    assert results["summary"]["combined_verdict"] == "CONFOUNDED"
    results = analyse(fixed_records(1.9), fixed_config(**{"analysis.allow_confounded": "true"}), FIXED, confounds=confounds)
    verdict = verdict_of(results)
    assert verdict["outcome"] == "PASS" and verdict["display"] == "PASS (confounded; override; smoke)"
    assert results["summary"]["combined_display"] == results["summary"]["validation_status"] == "PASS (confounded; override; smoke)"
    assert "smoke" in results["summary"]["validation_type"]


def two_baseline_records(first: float, second: float) -> list[dict]:
    rows = fixed_records(first, seed=1)
    other = fixed_records(second, seed=2)
    renamed = [dict(row, model="tiny-other", record_id=row["record_id"].replace("tiny-baseline", "tiny-other"))
               for row in other if row["model"] == "tiny-baseline"]
    # The other baseline's times relative to the candidate: rescale its rows onto this candidate.
    candidate = {(row["trial"], row["prompt_id"]): row["e2e_s"] for row in rows if row["model"] == "tiny-expanded"}
    candidate_other = {(row["trial"], row["prompt_id"]): row["e2e_s"] for row in other if row["model"] == "tiny-expanded"}
    for row in renamed:
        key = (row["trial"], row["prompt_id"])
        row["e2e_s"] *= candidate[key] / candidate_other[key]
    return rows + renamed


def two_baseline_config(order: tuple[str, str]):
    base = fixed_config()
    candidate = base.candidate
    baseline = next(model for model in base.models if model.role == "baseline")
    models = {"tiny-baseline": baseline, "tiny-other": replace(baseline, name="tiny-other")}
    return replace(base, models=(candidate, *(models[name] for name in order)))


def test_several_baselines_one_rule_independent_of_config_order() -> None:
    rows = two_baseline_records(1.95, 1.4)
    summaries = [analyse(rows, two_baseline_config(order), FIXED)["summary"]
                 for order in (("tiny-baseline", "tiny-other"), ("tiny-other", "tiny-baseline"))]
    assert summaries[0] == summaries[1]
    assert summaries[0]["combined_verdict"] == "FAIL" and summaries[0]["baseline"] == "tiny-other"
    assert "intersection-union" in summaries[0]["combined_rule"]
    passing = analyse(two_baseline_records(1.95, 1.9), two_baseline_config(("tiny-other", "tiny-baseline")), FIXED)["summary"]
    assert passing["combined_verdict"] == "PASS"
    confounds = {"tiny-other": {"confounded": True, "summary": "architecture differs"}}
    excluded = analyse(rows, two_baseline_config(("tiny-baseline", "tiny-other")), FIXED, confounds=confounds)["summary"]
    assert excluded["combined_verdict"] == "PASS" and "Left out as confounded: tiny-other" in excluded["combined_rule"]


@pytest.mark.parametrize(("outcomes", "expected"), [
    ({"a": "PASS", "b": "PASS"}, "PASS"),
    ({"a": "PASS", "b": "INCONCLUSIVE"}, "INCONCLUSIVE"),
    ({"a": "FAIL", "b": "INCONCLUSIVE"}, "FAIL"),
    ({"a": "PASS", "b": "CONFOUNDED"}, "PASS"),
    ({"a": "CONFOUNDED"}, "CONFOUNDED"),
    ({"a": "PASS", "b": "PARTIAL"}, "PARTIAL"),
    ({"a": "FAIL", "b": "INSUFFICIENT"}, "INSUFFICIENT"),
])
def test_combined_verdict_rule(outcomes: dict[str, str], expected: str) -> None:
    assert combined_verdict(outcomes) == expected
    assert combined_verdict(dict(reversed(list(outcomes.items())))) == expected


def twin_rows(rows: list[dict], factor: float) -> list[dict]:
    """An A/A twin of the baseline: the same work, timed `factor` slower."""
    return [dict(row, model=TWIN, record_id=row["record_id"].replace("tiny-baseline", TWIN), e2e_s=row["e2e_s"] * factor)
            for row in rows if row["model"] == "tiny-baseline"]


def test_noise_floor_flags_a_noisy_run() -> None:
    rows = fixed_records(1.9)
    quiet = analyse(rows + twin_rows(rows, 1.003), with_twin(fixed_config()), FIXED)
    assert quiet["noise_floor"]["noisy"] is False and quiet["noise_floor"]["pair"] == ["tiny-baseline", TWIN]
    assert quiet["noise_floor"]["ratio"]["estimate"] == pytest.approx(1 / 1.003, rel=1e-9)  # twin time / baseline time
    assert verdict_of(quiet)["display"] == "PASS (smoke)"
    noisy = analyse(rows + twin_rows(rows, 1.05), with_twin(fixed_config()), FIXED)
    assert noisy["noise_floor"]["noisy"] is True
    assert verdict_of(noisy)["display"] == "PASS (NOISY; smoke)" and "NOISY" in noisy["summary"]["combined_display"]
    assert [comparison["baseline"] for comparison in noisy["comparisons"]] == ["tiny-baseline"]  # a control is never judged


def test_latency_mode_ratio_of_mean_rates_and_tokens_per_second_never_decides() -> None:
    results = analyse(records(chars_ratio=1.78, tokens_ratio=0.98), config(), LATENCY)
    latency = results["comparisons"][0]["ratios"]["latency"]
    assert latency["tokens_per_s"]["estimate"] == pytest.approx(0.98, rel=0.01)
    verdict = results["comparisons"][0]["verdict"]
    assert verdict["ratio_key"] == "ja_chars_per_s" and verdict["basis"] == "measured, free generation"
    assert results["summary"]["speedup_ratio"] == pytest.approx(latency["ja_chars_per_s"]["estimate"])
    assert results["summary"]["baseline_tokens_per_sec"] == pytest.approx(100.0, rel=0.25)


def test_synthetic_weights_use_the_projection_hide_free_text_and_refuse_one_tokenizer_twice() -> None:
    experiment = config()
    synthetic = replace(experiment, models=tuple(replace(model, weights="synthetic") for model in experiment.models))
    documents = np.arange(20, 60)
    different = ReferenceCorpus(chars=list(documents * 2), tokens={"tiny-expanded": list(documents * 5 // 9),
                                                                  "tiny-baseline": list(documents)})
    results = analyse(records(chars_ratio=1.0, tokens_ratio=0.98), synthetic, LATENCY, reference=different)
    verdict = results["comparisons"][0]["verdict"]
    assert verdict["basis"] == "projected" and verdict["ratio_key"] == "ja_chars_per_s_projected"
    expected = 0.98 * sum(documents) / sum(documents * 5 // 9)
    assert verdict["ratio"]["estimate"] == pytest.approx(expected, rel=0.02) and verdict["outcome"] == "PASS"
    # Free-generation characters of synthetic weights are meaningless: not shown as a result.
    assert "ja_chars_per_s" not in results["comparisons"][0]["ratios"]["latency"]
    assert "ja_chars_per_s" not in results["models"]["tiny-expanded"]["metrics"]["latency"]
    same = ReferenceCorpus(chars=list(documents * 2), tokens={"tiny-expanded": list(documents), "tiny-baseline": list(documents)})
    verdict = analyse(records(chars_ratio=1.0), synthetic, LATENCY, reference=same)["comparisons"][0]["verdict"]
    assert verdict["outcome"] == "NOT MEASURED" and "same tokenizer" in verdict["reason"]
    verdict = analyse(records(chars_ratio=1.0), synthetic, LATENCY)["comparisons"][0]["verdict"]
    assert verdict["outcome"] == "NOT MEASURED"  # synthetic weights and no tokenizer stage: nothing to judge


def test_fixed_text_is_measured_even_with_synthetic_weights() -> None:
    experiment = fixed_config()
    synthetic = replace(experiment, models=tuple(replace(model, weights="synthetic") for model in experiment.models))
    verdict = verdict_of(analyse(fixed_records(1.9), synthetic, FIXED))
    assert verdict["basis"] == "measured, fixed text" and verdict["outcome"] == "PASS"


def test_latency_units_are_prompts_averaged_over_trials() -> None:
    rows = records(chars_ratio=1.5, prompts=3, trials=2)
    units = unit_values(rows, "tiny-baseline", "latency")
    assert set(units) == {"p0", "p1", "p2"}
    p0 = [row for row in rows if row["model"] == "tiny-baseline" and row["prompt_id"] == "p0"]
    assert units["p0"]["tokens_per_s"] == pytest.approx(np.mean([100 / row["e2e_s"] for row in p0]))


def test_newest_record_of_an_id_wins_and_warmups_errors_and_variants_are_excluded() -> None:
    rows = records(chars_ratio=1.5, prompts=2, trials=1)
    again = dict(rows[0], e2e_s=123.0)
    extra = [dict(rows[1], record_id="w", phase="warmup"), dict(rows[1], record_id="e", error="length mismatch"),
             dict(rows[1], record_id="v", variant="no-chunked-prefill")]
    kept = measured_records([*rows, again, *extra])
    assert len(kept) == len(rows)
    assert next(row for row in kept if row["record_id"] == rows[0]["record_id"])["e2e_s"] == 123.0
