"""Analysis: pure functions from trial records to per-model metrics, paired ratios and verdicts.

Unit of resampling: in latency mode the prompt (each prompt's value is its mean over measured trials, and
candidate and baseline are paired by prompt); in throughput mode the trial (one batch = one value).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifact.claims import CONFOUNDED, Claim, verdict
from artifact.config import ExperimentConfig
from artifact.stats import median_ci, paired_ratio_of_means, projected_speed_ratio

RESULTS_SCHEMA_VERSION = 1
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


def measured_records(records: Sequence[Mapping[str, Any]], variant: str = "default") -> list[Mapping[str, Any]]:
    """Measured, successful generations of one engine-settings variant (records before variants were
    introduced belong to "default")."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:  # a resumed run may have served a batch again: the newest record of an id counts
        if record["phase"] == "measure" and record.get("variant", "default") == variant:
            latest[record["record_id"]] = record
    return [record for record in latest.values() if not record.get("error")]


def ablation_summary(records: Sequence[Mapping[str, Any]], config: ExperimentConfig, *, seed: int, resamples: int,
                     confidence: float) -> dict[str, Any]:
    """Each ablation variant beside the default settings: tokens/s per model and mode, and the paired ratio
    variant / default (the same prompts, the same trials)."""
    variants = sorted({record.get("variant", "default") for record in records if record["phase"] == "measure"} - {"default"})
    default = measured_records(records)
    summary: dict[str, Any] = {}
    for variant in variants:
        changed = measured_records(records, variant)
        rows = []
        for model in config.models:
            for mode in config.trials.modes:
                base_units = unit_values(default, model.name, mode)
                variant_units = unit_values(changed, model.name, mode)
                varied, base = _paired(variant_units, base_units, "tokens_per_s")
                if not varied.size:
                    continue
                rows.append({
                    "model": model.name, "mode": mode,
                    "default_tokens_per_s": median_ci(base, seed=seed, n_resamples=resamples, confidence=confidence).to_dict(),
                    "variant_tokens_per_s": median_ci(varied, seed=seed, n_resamples=resamples, confidence=confidence).to_dict(),
                    "ratio_variant_over_default": paired_ratio_of_means(varied, base, seed=seed, n_resamples=resamples,
                                                                        confidence=confidence).to_dict(),
                })
        summary[variant] = rows
    return summary


def _record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    e2e = record["e2e_s"]
    tokens = record["output_tokens"]
    values = {
        "tokens_per_s": tokens / e2e,
        "ja_chars_per_s": record["output_chars"] / e2e,
        "e2e_s": e2e,
    }
    if record.get("ttft_s") is not None:
        values["ttft_s"] = record["ttft_s"]
        if tokens > 1:
            values["tpot_s"] = (e2e - record["ttft_s"]) / (tokens - 1)
    return values


def unit_values(records: Sequence[Mapping[str, Any]], model: str, mode: str) -> dict[str, dict[str, float]]:
    """Per unit (prompt in latency mode, trial in throughput mode): each metric's value."""
    chosen = [record for record in records if record["model"] == model and record["mode"] == mode]
    if mode == "throughput":
        by_trial: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for record in chosen:
            by_trial[f"trial-{record['trial']}"].append(record)
        units: dict[str, dict[str, float]] = {}
        for key, batch in by_trial.items():
            wall = max(record["e2e_s"] for record in batch)
            units[key] = {
                "tokens_per_s": sum(record["output_tokens"] for record in batch) / wall,
                "ja_chars_per_s": sum(record["output_chars"] for record in batch) / wall,
                "e2e_s": wall,
            }
            first_tokens = [record["ttft_s"] for record in batch if record.get("ttft_s") is not None]
            if first_tokens:
                units[key]["ttft_s"] = float(np.mean(first_tokens))
        return units
    by_prompt: dict[str, list[dict[str, float]]] = defaultdict(list)
    for record in chosen:
        by_prompt[record["prompt_id"]].append(_record_metrics(record))
    return {
        prompt: {metric: float(np.mean([values[metric] for values in rows])) for metric in rows[0] if all(metric in values for values in rows)}
        for prompt, rows in by_prompt.items()
    }


def japanese_share(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Hiragana, katakana and kanji among the generated characters (None for records that predate the count).
    With real weights a low share means the models drifted out of Japanese while forced to keep generating."""
    counted = [record for record in records if "output_japanese_chars" in record]
    chars = sum(record["output_chars"] for record in counted)
    return sum(record["output_japanese_chars"] for record in counted) / chars if counted and chars else None


def model_summary(units: dict[str, dict[str, float]], *, seed: int, resamples: int, confidence: float) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in PER_MODEL_METRICS:
        values = [unit[metric] for unit in units.values() if metric in unit]
        if values:
            summary[metric] = median_ci(values, seed=seed, n_resamples=resamples, confidence=confidence).to_dict()
    return summary


def _paired(units_c: dict[str, dict[str, float]], units_b: dict[str, dict[str, float]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(units_c) & set(units_b))
    return (np.array([units_c[key][metric] for key in keys]), np.array([units_b[key][metric] for key in keys]))


def compare(units_c: dict[str, dict[str, float]], units_b: dict[str, dict[str, float]], *, seed: int, resamples: int,
            confidence: float, token_counts: tuple[Sequence[int], Sequence[int]] | None) -> dict[str, Any]:
    """Ratios candidate / baseline: measured for each speed metric, and projected characters/s when token
    counts of a reference corpus (candidate, baseline) are given."""
    ratios: dict[str, Any] = {}
    for metric in RATIO_METRICS:
        candidate, baseline = _paired(units_c, units_b, metric)
        if candidate.size:
            ratios[metric] = paired_ratio_of_means(candidate, baseline, seed=seed, n_resamples=resamples,
                                                   confidence=confidence).to_dict()
    if token_counts is not None:
        candidate, baseline = _paired(units_c, units_b, "tokens_per_s")
        if candidate.size:
            ratios["ja_chars_per_s_projected"] = projected_speed_ratio(
                candidate, baseline, token_counts[0], token_counts[1], seed=seed, n_resamples=resamples,
                confidence=confidence,
            ).to_dict()
    return ratios


NOT_MEASURED = "NOT MEASURED"


def verdict_entry(ratios: Mapping[str, Any], claim: Claim, *, all_real_weights: bool, confounded: bool,
                  allow_confounded: bool, same_tokenizer: bool = False) -> dict[str, Any]:
    """Pick the verdict ratio (measured when every model has real weights, else projected) and judge it."""
    metric = claim.verdict.metric
    basis = "measured"
    key = metric
    if metric == "ja_chars_per_s" and not all_real_weights:
        # Synthetic weights emit meaningless text: only the projection from the real tokenizers says anything.
        key, basis = "ja_chars_per_s_projected", "projected"
    if key not in ratios:
        return {"metric": metric, "basis": basis, "outcome": NOT_MEASURED, "ratio": None, "threshold": claim.threshold,
                "reason": f"no {key} ratio in this run"}
    if basis == "projected" and same_tokenizer:
        # The projection multiplies by a token-count ratio of exactly 1: it cannot show a vocabulary effect.
        return {"metric": metric, "basis": basis, "ratio_key": key, "ratio": ratios[key], "outcome": NOT_MEASURED,
                "threshold": claim.threshold, "statistical_outcome": NOT_MEASURED,
                "reason": "candidate and baseline used the same tokenizer (identical token counts on every document)"}
    interval = ratios[key]
    outcome = verdict(interval["low"], interval["high"], claim.threshold)
    if confounded and not allow_confounded:
        outcome = CONFOUNDED
    return {"metric": metric, "basis": basis, "ratio_key": key, "ratio": interval, "outcome": outcome,
            "threshold": claim.threshold, "statistical_outcome": verdict(interval["low"], interval["high"], claim.threshold)}


def analyse(records: Sequence[Mapping[str, Any]], config: ExperimentConfig, claim: Claim, *,
            reference: ReferenceCorpus | None = None,
            confounds: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """All numbers of results.json except the environment and the cost (added by the pipeline)."""
    kept = measured_records(records)
    settings = config.analysis
    stats_kwargs = {"seed": config.seed, "resamples": settings.bootstrap_resamples, "confidence": settings.confidence}
    units = {(model.name, mode): unit_values(kept, model.name, mode) for model in config.models for mode in config.trials.modes}
    models = {
        model.name: {
            "role": model.role,
            "source": model.source_label,
            "weights": model.weights,
            "generations": sum(1 for record in kept if record["model"] == model.name),
            "japanese_script_share": japanese_share([record for record in kept if record["model"] == model.name]),
            "metrics": {mode: model_summary(units[(model.name, mode)], **stats_kwargs) for mode in config.trials.modes},
        }
        for model in config.models
    }
    if reference is not None:
        _add_projected_rates(models, reference)
    all_real = all(model.weights == "real" for model in config.models)
    candidate = config.candidate
    comparisons = []
    for baseline in config.baselines:
        counts = None
        if reference is not None and candidate.name in reference.tokens and baseline.name in reference.tokens:
            counts = (reference.tokens[candidate.name], reference.tokens[baseline.name])
        confound = (confounds or {}).get(baseline.name, {})
        per_mode = {
            mode: compare(units[(candidate.name, mode)], units[(baseline.name, mode)], token_counts=counts, **stats_kwargs)
            for mode in config.trials.modes
        }
        verdict_ratios = per_mode.get(claim.verdict.mode, {})
        same_tokenizer = counts is not None and list(counts[0]) == list(counts[1])
        comparisons.append({
            "candidate": candidate.name,
            "baseline": baseline.name,
            "ratios": per_mode,
            "confounds": confound,
            "verdict": verdict_entry(verdict_ratios, claim, all_real_weights=all_real,
                                     confounded=bool(confound.get("confounded")),
                                     allow_confounded=settings.allow_confounded, same_tokenizer=same_tokenizer),
        })
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "claim": claim_summary(claim),
        "models": models,
        "comparisons": comparisons,
        "analysis": {
            "bootstrap_resamples": settings.bootstrap_resamples,
            "confidence": settings.confidence,
            "seed": config.seed,
            "unit": {"latency": "prompt (mean over measured trials), paired by prompt",
                     "throughput": "trial (one batch), paired by trial"},
            "records_used": len(kept),
            "records_excluded": len(records) - len(kept),
        },
        "ablations": ablation_summary(records, config, **stats_kwargs),
        "summary": plan_summary(comparisons, models, claim, candidate.name),
    }


def _add_projected_rates(models: dict[str, Any], reference: ReferenceCorpus) -> None:
    """Per model: tokens/s x characters per token of its own tokenizer on the reference corpus.

    The interval is the tokens/s interval scaled by that constant; the tokenizer's own uncertainty enters
    the projected *ratio*, where prompts and documents are resampled together."""
    for name, model in models.items():
        if name not in reference.tokens:
            continue
        chars_per_token = sum(reference.chars) / sum(reference.tokens[name])
        model["chars_per_token_reference"] = chars_per_token
        for metrics in model["metrics"].values():
            rate = metrics.get("tokens_per_s")
            if rate:
                metrics["ja_chars_per_s_projected"] = {
                    **rate, **{key: rate[key] * chars_per_token for key in ("estimate", "low", "high")},
                    "method": f"{rate['method']} (tokens/s) x chars/token",
                }


def claim_summary(claim: Claim) -> dict[str, Any]:
    return {
        "id": claim.id, "title": claim.title, "statement": claim.statement, "source": claim.source,
        "paper_value": claim.paper_value, "threshold": claim.threshold,
        "verdict_metric": {"metric": claim.verdict.metric, "mode": claim.verdict.mode, "label": claim.verdict.label, "why": claim.verdict.why},
        "secondary": None if claim.secondary is None else {"metric": claim.secondary.metric, "reference": claim.secondary.reference, "label": claim.secondary.label, "why": claim.secondary.why},
        "informational": [{"metric": item.metric, "label": item.label, "why": item.why} for item in claim.informational],
    }


def plan_summary(comparisons: list[dict[str, Any]], models: Mapping[str, Any], claim: Claim, candidate: str) -> dict[str, Any]:
    """The original plan's result keys, kept so its scripts work. speedup_ratio is the verdict metric's ratio
    against the first baseline (not tokens/s, which the plan used and which cannot show the effect)."""
    first = comparisons[0]
    ratio = first["verdict"]["ratio"]
    mode = claim.verdict.mode

    def tokens_per_s(model: str) -> float | None:
        metric = models[model]["metrics"].get(mode, {}).get("tokens_per_s")
        return None if metric is None else metric["estimate"]

    return {
        "validation_type": f"{claim.id} Swallow Inference Efficiency",
        "speedup_ratio": None if ratio is None else ratio["estimate"],
        "speedup_percentage": None if ratio is None else (ratio["estimate"] - 1) * 100,
        "validation_status": first["verdict"]["outcome"],
        "baseline": first["baseline"],
        "baseline_tokens_per_sec": tokens_per_s(first["baseline"]),
        "swallow_tokens_per_sec": tokens_per_s(candidate),
        "speedup_metric": f"{claim.verdict.metric} ({first['verdict']['basis']}), {mode} mode",
    }
