"""Analysis on hand-built records with known answers: verdicts, basis, pairing, confounds, resumed batches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from artifact.analysis import ReferenceCorpus, analyse, measured_records, unit_values
from artifact.claims import get_claim
from artifact.config import load_config, parse_overrides

CLAIM = get_claim("R-2")


def config(**overrides: str):
    pairs = {"trials.modes": '["latency"]', "analysis.bootstrap_resamples": "2000", **overrides}
    return load_config("smoke", parse_overrides([f"{key}={value}" for key, value in pairs.items()]))


def records(chars_ratio: float, tokens_ratio: float = 1.0, prompts: int = 12, trials: int = 2, seed: int = 0) -> list[dict]:
    """Baseline: 100 tokens in ~1 s per prompt; candidate: tokens/s x tokens_ratio, chars/s x chars_ratio."""
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


def test_known_ratio_passes_and_low_ratio_fails() -> None:
    passing = analyse(records(chars_ratio=1.9), config(), CLAIM)["comparisons"][0]["verdict"]
    assert passing["outcome"] == "PASS" and passing["basis"] == "measured"
    assert passing["ratio"]["estimate"] == pytest.approx(1.9, rel=0.02) and passing["ratio"]["low"] >= 1.7
    failing = analyse(records(chars_ratio=1.2), config(), CLAIM)["comparisons"][0]["verdict"]
    assert failing["outcome"] == "FAIL" and failing["ratio"]["high"] < 1.7
    straddling = analyse(records(chars_ratio=1.7, prompts=4, trials=1), config(), CLAIM)["comparisons"][0]["verdict"]
    assert straddling["ratio"]["low"] < 1.7 <= straddling["ratio"]["high"] and straddling["outcome"] == "INCONCLUSIVE"


def test_tokens_per_second_is_reported_but_never_decides() -> None:
    results = analyse(records(chars_ratio=1.78, tokens_ratio=0.98), config(), CLAIM)
    latency = results["comparisons"][0]["ratios"]["latency"]
    assert latency["tokens_per_s"]["estimate"] == pytest.approx(0.98, rel=0.01)
    assert results["comparisons"][0]["verdict"]["ratio_key"] == "ja_chars_per_s"
    assert results["summary"]["speedup_ratio"] == pytest.approx(latency["ja_chars_per_s"]["estimate"])
    assert results["summary"]["baseline_tokens_per_sec"] == pytest.approx(100.0, rel=0.25)


def test_synthetic_weights_use_the_projection_and_refuse_one_tokenizer_twice() -> None:
    experiment = config()
    synthetic = replace(experiment, models=tuple(replace(model, weights="synthetic") for model in experiment.models))
    documents = np.arange(20, 60)
    different = ReferenceCorpus(chars=list(documents * 2), tokens={"tiny-expanded": list(documents * 5 // 9),
                                                                  "tiny-baseline": list(documents)})
    verdict = analyse(records(chars_ratio=1.0, tokens_ratio=0.98), synthetic, CLAIM, reference=different)["comparisons"][0]["verdict"]
    assert verdict["basis"] == "projected" and verdict["ratio_key"] == "ja_chars_per_s_projected"
    expected = 0.98 * sum(documents) / sum(documents * 5 // 9)
    assert verdict["ratio"]["estimate"] == pytest.approx(expected, rel=0.02) and verdict["outcome"] == "PASS"
    same = ReferenceCorpus(chars=list(documents * 2), tokens={"tiny-expanded": list(documents), "tiny-baseline": list(documents)})
    verdict = analyse(records(chars_ratio=1.0), synthetic, CLAIM, reference=same)["comparisons"][0]["verdict"]
    assert verdict["outcome"] == "NOT MEASURED" and "same tokenizer" in verdict["reason"]
    verdict = analyse(records(chars_ratio=1.0), synthetic, CLAIM)["comparisons"][0]["verdict"]
    assert verdict["outcome"] == "NOT MEASURED"  # synthetic weights and no tokenizer stage: nothing to judge


def test_confounded_unless_overridden() -> None:
    confounds = {"tiny-baseline": {"confounded": True, "summary": "architecture GPT2LMHeadModel"}}
    verdict = analyse(records(chars_ratio=1.9), config(), CLAIM, confounds=confounds)["comparisons"][0]["verdict"]
    assert verdict["outcome"] == "CONFOUNDED" and verdict["statistical_outcome"] == "PASS"
    allowed = config(**{"analysis.allow_confounded": "true"})
    verdict = analyse(records(chars_ratio=1.9), allowed, CLAIM, confounds=confounds)["comparisons"][0]["verdict"]
    assert verdict["outcome"] == "PASS"


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
