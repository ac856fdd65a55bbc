"""Analysis: pure functions from trial records to per-model metrics, paired ratios and verdicts.

A ratio uses the full table of rounds (trials) x units (documents in fixed_text mode, prompts in latency mode,
the round's batch in throughput mode), paired cell by cell; its interval treats both rounds and units as
random samples (artifact/stats.py, crossed_ratio_of_sums).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from artifact.analysis.ratios import FIXED_TEXT, projected_ratio, ratio
from artifact.analysis.units import Cells, cells, japanese_share, measured_records, unit_values
from artifact.analysis.verdicts import claim_summary, completeness, infer_planned, judge, missing_for, noise_floor
from artifact.claims import Claim
from artifact.config import ExperimentConfig
from artifact.stats import median_ci

RESULTS_SCHEMA_VERSION = 2
PER_MODEL_METRICS = {
    "tokens_per_s": "output tokens / s",
    "ja_chars_per_s": "Japanese characters / s (measured)",
    "ja_chars_per_s_projected": "Japanese characters / s (projected)",
    "tpot_s": "time per output token (s)",
    "ttft_s": "time to first token (s)",
    "e2e_s": "end-to-end time (s)",
}
RATIO_METRICS = ("ja_chars_per_s", "tokens_per_s")


@dataclass(frozen=True)
class ReferenceCorpus:
    """Per-document characters and token counts (by model) of the corpus the projection uses."""

    chars: Sequence[int]
    tokens: Mapping[str, Sequence[int]]


def _free_text_meaningless(mode: str, weights: Sequence[str]) -> bool:
    """Synthetic weights generate meaningless text: their characters in free generation say nothing."""
    return mode != FIXED_TEXT and "synthetic" in weights


def ablation_summary(records: Sequence[Mapping[str, Any]], config: ExperimentConfig, *, seed: int, resamples: int,
                     confidence: float) -> dict[str, Any]:
    """Each ablation variant beside the default settings: tokens/s per model and mode, and the ratio
    variant / default over the same rounds and units."""
    variants = sorted({record.get("variant", "default") for record in records if record["phase"] == "measure"} - {"default"})
    default = measured_records(records)
    summary: dict[str, Any] = {}
    for variant in variants:
        changed = measured_records(records, variant)
        rows = []
        for model in config.models:
            for mode in config.trials.modes:
                base_cells, variant_cells = cells(default, model.name, mode), cells(changed, model.name, mode)
                varied = ratio(variant_cells, base_cells, mode, "tokens_per_s", confidence=confidence)
                if varied is None:
                    continue
                base_units = [values["tokens_per_s"] for values in unit_values(default, model.name, mode).values()]
                variant_units = [values["tokens_per_s"] for values in unit_values(changed, model.name, mode).values()]
                rows.append({
                    "model": model.name, "mode": mode,
                    "default_tokens_per_s": median_ci(base_units, seed=seed, n_resamples=resamples, confidence=confidence).to_dict(),
                    "variant_tokens_per_s": median_ci(variant_units, seed=seed, n_resamples=resamples, confidence=confidence).to_dict(),
                    "ratio_variant_over_default": varied,
                })
        summary[variant] = rows
    return summary


def model_summary(units: dict[str, dict[str, float]], *, seed: int, resamples: int, confidence: float,
                  hide: Sequence[str] = ()) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in PER_MODEL_METRICS:
        values = [unit[metric] for unit in units.values() if metric in unit]
        if values and metric not in hide:
            summary[metric] = median_ci(values, seed=seed, n_resamples=resamples, confidence=confidence).to_dict()
    return summary


def compare(cells_c: Cells, cells_b: Cells, mode: str, *, confidence: float,
            token_counts: tuple[Sequence[int], Sequence[int]] | None, free_text_meaningless: bool) -> dict[str, Any]:
    """Ratios candidate / baseline for each speed metric (measured), plus projected characters/s when token
    counts of a reference corpus (candidate, baseline) are given and the mode is free generation."""
    ratios: dict[str, Any] = {}
    for metric in RATIO_METRICS:
        if metric == "ja_chars_per_s" and free_text_meaningless:
            continue
        found = ratio(cells_c, cells_b, mode, metric, confidence=confidence)
        if found is not None:
            ratios[metric] = found
    if token_counts is not None and mode != FIXED_TEXT:
        projected = projected_ratio(cells_c, cells_b, mode, token_counts, confidence=confidence)
        if projected is not None:
            ratios["ja_chars_per_s_projected"] = projected
    return ratios


def verdict_key(claim: Claim, all_real_weights: bool) -> tuple[str, str]:
    """Which ratio decides, and on what basis: fixed text is measured whatever the weights (the work of a decode
    step does not depend on their values); free generation needs real weights, else it is projected."""
    metric, mode = claim.verdict.metric, claim.verdict.mode
    if mode == FIXED_TEXT:
        return metric, "measured, fixed text"
    if metric == "ja_chars_per_s" and not all_real_weights:
        return "ja_chars_per_s_projected", "projected"
    return metric, "measured, free generation"


def judged_comparisons(records: Sequence[Mapping[str, Any]], config: ExperimentConfig, claim: Claim, *,
                       reference: ReferenceCorpus | None = None,
                       confounds: Mapping[str, Mapping[str, Any]] | None = None,
                       planned: Sequence[Mapping[str, Any]] | None = None
                       ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]:
    """Every baseline's ratios and verdict, the A/A noise floor and completeness: the part of analyse() that
    decides (the coverage check calls exactly this)."""
    kept = measured_records(records)
    confidence = config.analysis.confidence
    weights = {model.name: model.weights for model in config.models}
    table = {(model.name, mode): cells(kept, model.name, mode) for model in config.models for mode in config.trials.modes}
    done = completeness(planned if planned is not None else infer_planned(records, config), kept,
                        inferred=planned is None)
    key, basis = verdict_key(claim, all(model.weights == "real" for model in config.models))
    mode = claim.verdict.mode
    noise = _noise_floor(table, config, claim, key)
    noisy = None if noise is None else noise["noisy"]
    candidate = config.candidate
    comparisons = []
    for baseline in sorted(config.baselines, key=lambda model: model.name):
        counts = None
        if reference is not None and candidate.name in reference.tokens and baseline.name in reference.tokens:
            counts = (reference.tokens[candidate.name], reference.tokens[baseline.name])
        confound = (confounds or {}).get(baseline.name, {})
        per_mode = {
            each: compare(table[(candidate.name, each)], table[(baseline.name, each)], each, confidence=confidence,
                          token_counts=counts,
                          free_text_meaningless=_free_text_meaningless(each, [weights[candidate.name], weights[baseline.name]]))
            for each in config.trials.modes
        }
        unmeasured = None
        if basis == "projected" and counts is not None and list(counts[0]) == list(counts[1]):
            # The projection multiplies by a token-count ratio of exactly 1: it cannot show a vocabulary effect.
            unmeasured = "candidate and baseline used the same tokenizer (identical token counts on every document)"
        comparisons.append({
            "candidate": candidate.name,
            "baseline": baseline.name,
            "ratios": per_mode,
            "confounds": confound,
            "verdict": judge(per_mode.get(mode, {}).get(key), claim, config, basis=basis, ratio_key=key,
                             missing=missing_for(done, (candidate.name, baseline.name), mode),
                             confounded=bool(confound.get("confounded")), noisy=noisy, reason_unmeasured=unmeasured),
        })
    statuses = [comparison["verdict"]["outcome"] for comparison in comparisons]
    done["status"] = "insufficient" if "INSUFFICIENT" in statuses else done["status"]
    return comparisons, noise, done


def analyse(records: Sequence[Mapping[str, Any]], config: ExperimentConfig, claim: Claim, *,
            reference: ReferenceCorpus | None = None,
            confounds: Mapping[str, Mapping[str, Any]] | None = None,
            planned: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """All numbers of results.json except the environment and the cost (added by the pipeline). `planned` is the
    plan's list of measured generations (plan.json); without it the plan is inferred from the records."""
    kept = measured_records(records)
    settings = config.analysis
    confidence = settings.confidence
    stats_kwargs = {"seed": config.seed, "resamples": settings.bootstrap_resamples, "confidence": confidence}
    models = {
        model.name: {
            "role": model.role,
            "source": model.source_label,
            "weights": model.weights,
            "generations": sum(1 for record in kept if record["model"] == model.name),
            "japanese_script_share": japanese_share([record for record in kept if record["model"] == model.name]),
            "metrics": {mode: model_summary(unit_values(kept, model.name, mode), **stats_kwargs,
                                            hide=("ja_chars_per_s",) if _free_text_meaningless(mode, [model.weights]) else ())
                        for mode in config.trials.modes},
        }
        for model in config.models
    }
    if reference is not None:
        _add_projected_rates(models, reference)
    comparisons, noise, done = judged_comparisons(records, config, claim, reference=reference, confounds=confounds,
                                                  planned=planned)
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "claim": claim_to_summary(claim),
        "models": models,
        "comparisons": comparisons,
        "noise_floor": noise,
        "completeness": done,
        "power": _power(comparisons),
        "analysis": {
            "bootstrap_resamples": settings.bootstrap_resamples,
            "confidence": confidence,
            "seed": config.seed,
            "interval": "ratios: crossed rounds x units random-effects t interval (no resampling); per-model medians: "
                        "percentile bootstrap",
            "unit": {"fixed_text": "document x round, paired by document and round",
                     "latency": "prompt x round, paired by prompt and round",
                     "throughput": "round (one batch), paired by round"},
            "min_units": settings.min_units, "min_rounds": settings.min_rounds,
            "records_used": len(kept),
            "records_excluded": len(records) - len(kept),
        },
        "ablations": ablation_summary(records, config, **stats_kwargs),
        "summary": claim_summary(comparisons, models, claim, config.candidate.name, config, noise),
    }


def _noise_floor(table: Mapping[tuple[str, str], Cells], config: ExperimentConfig, claim: Claim, key: str) -> dict[str, Any] | None:
    pair = config.analysis.noise_floor
    if not pair:
        return None
    mode = claim.verdict.mode
    # The A/A pair shares one tokenizer: a projection reduces to tokens/s, so compare that directly.
    metric = "tokens_per_s" if key == "ja_chars_per_s_projected" else key
    first, second = pair
    if (first, mode) not in table or (second, mode) not in table:
        return noise_floor(None, config, mode, metric)
    found = ratio(table[(second, mode)], table[(first, mode)], mode, metric, confidence=config.analysis.confidence)
    return noise_floor(found, config, mode, metric)


def _power(comparisons: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    advice = {comparison["baseline"]: comparison["verdict"]["power"] for comparison in comparisons
              if comparison["verdict"].get("power")}
    return {"by_baseline": advice} if advice else None


def _add_projected_rates(models: dict[str, Any], reference: ReferenceCorpus) -> None:
    """Per model: tokens/s x characters per token of its own tokenizer on the reference corpus (free generation
    modes only; fixed-text timing measures characters/s directly)."""
    for name, model in models.items():
        if name not in reference.tokens:
            continue
        chars_per_token = sum(reference.chars) / sum(reference.tokens[name])
        model["chars_per_token_reference"] = chars_per_token
        for mode, metrics in model["metrics"].items():
            rate = metrics.get("tokens_per_s")
            if rate and mode != FIXED_TEXT:
                metrics["ja_chars_per_s_projected"] = {
                    **rate, **{key: rate[key] * chars_per_token for key in ("estimate", "low", "high")},
                    "method": f"{rate['method']} (tokens/s) x chars/token",
                }


def claim_to_summary(claim: Claim) -> dict[str, Any]:
    return {
        "id": claim.id, "title": claim.title, "statement": claim.statement, "source": claim.source,
        "paper_value": claim.paper_value, "threshold": claim.threshold,
        "verdict_metric": {"metric": claim.verdict.metric, "mode": claim.verdict.mode, "label": claim.verdict.label, "why": claim.verdict.why},
        "secondary": None if claim.secondary is None else {"metric": claim.secondary.metric, "reference": claim.secondary.reference, "label": claim.secondary.label, "why": claim.secondary.why},
        "informational": [{"metric": item.metric, "label": item.label, "why": item.why} for item in claim.informational],
    }


