"""Verdict rules: completeness, the minimum data for a verdict, markers that qualify it, the A/A noise floor,
and the claim's combined verdict over several baselines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from artifact.analysis.power import sample_size
from artifact.claims import (COMBINED_RULE, CONFOUNDED, INCONCLUSIVE, INSUFFICIENT, NOT_MEASURED, OVERRIDE_MARKER,
                             PARTIAL, Claim, combined_verdict, display, verdict)
from artifact.config import ExperimentConfig

# Below this many paired units an interval is rough: flagged "few units" next to the verdict.
FEW_UNITS = 8


def infer_planned(records: Sequence[Mapping[str, Any]], config: ExperimentConfig) -> list[dict[str, Any]]:
    """For runs without plan.json: every model x configured round x every unit any model was asked for."""
    units: dict[str, set[str]] = {}
    for record in records:
        if record["phase"] == "measure" and record.get("variant", "default") == "default":
            units.setdefault(record["mode"], set()).add(str(record["prompt_id"]))
    return [{"record_id": f"measure-t{trial}-{model.name}-{mode}-{unit}", "model": model.name, "mode": mode,
             "trial": trial, "unit": unit, "variant": "default"}
            for model in config.models for mode in config.trials.modes for trial in range(config.trials.measured)
            for unit in sorted(units.get(mode, ()))]


def completeness(planned: Sequence[Mapping[str, Any]], kept: Sequence[Mapping[str, Any]], *, inferred: bool) -> dict[str, Any]:
    """Planned vs measured (successful) generations of the default variant, per model and mode."""
    done = {(record["model"], record["mode"], int(record["trial"]), str(record["prompt_id"])) for record in kept}
    wanted = [row for row in planned if row.get("variant", "default") == "default"]
    missing = [row for row in wanted if (row["model"], row["mode"], int(row["trial"]), str(row["unit"])) not in done]
    by_model = Counter((row["model"], row["mode"]) for row in missing)
    return {
        "planned": len(wanted),
        "measured": len(wanted) - len(missing),
        "missing": [{"model": model, "mode": mode, "count": count,
                     "examples": [row["record_id"] for row in missing if (row["model"], row["mode"]) == (model, mode)][:5]}
                    for (model, mode), count in sorted(by_model.items())],
        "status": "complete" if not missing else "partial",
        "planned_from": "records (no plan.json: units that no model reached are not counted)" if inferred else "plan.json",
    }


def missing_for(completeness_entry: Mapping[str, Any], models: Iterable[str], mode: str) -> list[str]:
    names = set(models)
    return [f"{row['model']}: {row['count']} of its {mode} generations" for row in completeness_entry["missing"]
            if row["model"] in names and row["mode"] == mode]


def judge(ratio: Mapping[str, Any] | None, claim: Claim, config: ExperimentConfig, *, basis: str, ratio_key: str,
          missing: list[str], confounded: bool, noisy: bool | None, reason_unmeasured: str | None = None) -> dict[str, Any]:
    """One comparison's verdict: the statistical rule on the interval, then what the data allow."""
    settings = config.analysis
    entry: dict[str, Any] = {"metric": claim.verdict.metric, "mode": claim.verdict.mode, "basis": basis,
                             "ratio_key": ratio_key, "threshold": claim.threshold, "paper_value": claim.paper_value}
    if ratio is None or reason_unmeasured:
        # A confounded baseline stays CONFOUNDED whatever was measured; otherwise nothing can be judged.
        blocked = confounded and not settings.allow_confounded
        outcome = CONFOUNDED if blocked else NOT_MEASURED
        markers = ([OVERRIDE_MARKER] if confounded and settings.allow_confounded else []) + (["smoke"] if config.smoke else [])
        return {**entry, "ratio": None, "outcome": outcome, "statistical_outcome": NOT_MEASURED,
                "display": display(outcome, markers), "markers": markers, "few_units": None,
                "reason": reason_unmeasured or f"no {ratio_key} ratio in {claim.verdict.mode} mode in this run",
                "estimator": None, "per_round": [], "per_unit": [], "paper_value_inside": None, "power": None}
    statistical = verdict(ratio["low"], ratio["high"], claim.threshold)
    reason = None
    if confounded and not settings.allow_confounded:  # a design problem: no amount of data fixes it
        outcome = CONFOUNDED
        reason = "the baseline differs from the candidate in more than the vocabulary (see Confounds)"
    elif ratio["n"] < settings.min_units or ratio["n_rounds"] < settings.min_rounds:
        outcome = INSUFFICIENT
        reason = (f"{ratio['n']} paired units x {ratio['n_rounds']} rounds; a verdict needs at least {settings.min_units} "
                  f"units and {settings.min_rounds} rounds (analysis.min_units, analysis.min_rounds), so that drift "
                  "between rounds and spread between units are both estimated")
    elif missing:
        outcome = PARTIAL
        reason = "incomplete data (a verdict needs every planned unit for every model): missing " + "; ".join(missing)
    else:
        outcome = statistical
    few = ratio["n"] < FEW_UNITS
    markers = []
    if confounded and settings.allow_confounded:
        markers.append(OVERRIDE_MARKER)
    if few:
        markers.append("few units")
    if noisy:
        markers.append("NOISY")
    if config.smoke:
        markers.append("smoke")
    return {**entry, "ratio": dict(ratio), "estimator": ratio.get("estimator"), "outcome": outcome,
            "statistical_outcome": statistical, "display": display(outcome, markers), "markers": markers,
            "few_units": few, "reason": reason, "per_round": ratio.get("per_round", []),
            "per_unit": ratio.get("per_unit", []),
            "paper_value_inside": bool(ratio["low"] <= claim.paper_value <= ratio["high"]),
            "power": sample_size(ratio, claim.threshold, unit_label=unit_label(claim.verdict.mode))
            if outcome == INCONCLUSIVE or statistical == INCONCLUSIVE else None}


def unit_label(mode: str) -> str:
    return {"fixed_text": "documents", "latency": "prompts", "throughput": "rounds"}.get(mode, "units")


def noise_floor(ratio: Mapping[str, Any] | None, config: ExperimentConfig, mode: str, metric: str) -> dict[str, Any] | None:
    """The A/A comparison: two models of identical shape and tokenizer, measured like the real ones."""
    pair = config.analysis.noise_floor
    if not pair:
        return None
    tolerance = config.analysis.noise_tolerance
    noisy = None if ratio is None else bool(abs(ratio["estimate"] - 1) > tolerance)
    return {"pair": list(pair), "mode": mode, "metric": metric, "ratio": None if ratio is None else dict(ratio),
            "tolerance": tolerance, "noisy": noisy,
            "rule": f"NOISY when the A/A ratio {pair[1]} vs {pair[0]} differs from 1 by more than {tolerance:.1%}: "
                    "identical work measured that far apart means the run cannot resolve differences of that size "
                    "(a per-load or per-position effect that rounds do not average out)."}


def claim_summary(comparisons: Sequence[Mapping[str, Any]], models: Mapping[str, Any], claim: Claim, candidate: str,
                  config: ExperimentConfig, noise: Mapping[str, Any] | None) -> dict[str, Any]:
    """results.json `summary`: the original plan's keys plus the combined verdict and its rule."""
    outcomes = {comparison["baseline"]: comparison["verdict"]["outcome"] for comparison in comparisons}
    combined = combined_verdict(outcomes)
    judged = [comparison for comparison in comparisons
              if comparison["verdict"]["outcome"] != CONFOUNDED and comparison["verdict"]["ratio"] is not None]
    binding = min(judged, key=lambda comparison: (comparison["verdict"]["ratio"]["estimate"], comparison["baseline"]),
                  default=None)
    markers: list[str] = []
    for comparison in judged:
        for marker in comparison["verdict"].get("markers", []):
            if marker not in markers:
                markers.append(marker)
    if noise and noise.get("noisy") and "NOISY" not in markers:
        markers.append("NOISY")
    if config.smoke and "smoke" not in markers:
        markers.append("smoke")
    excluded = sorted(baseline for baseline, outcome in outcomes.items() if outcome == CONFOUNDED)
    ratio = None if binding is None else binding["verdict"]["ratio"]
    mode = claim.verdict.mode

    def tokens_per_s(model: str) -> float | None:
        metric = models[model]["metrics"].get(mode, {}).get("tokens_per_s")
        return None if metric is None else metric["estimate"]

    kind = "smoke: tiny model pair, a pipeline check, not evidence about Swallow" if config.smoke else "full run"
    return {
        "validation_type": f"{claim.id} Swallow Inference Efficiency ({kind})",
        "combined_verdict": combined,
        "combined_display": display(combined, markers),
        "combined_rule": COMBINED_RULE + (f" Left out as confounded: {', '.join(excluded)}." if excluded else ""),
        "validation_status": display(combined, markers),
        "speedup_ratio": None if ratio is None else ratio["estimate"],
        "speedup_percentage": None if ratio is None else (ratio["estimate"] - 1) * 100,
        "baseline": None if binding is None else binding["baseline"],
        "baseline_tokens_per_sec": None if binding is None else tokens_per_s(binding["baseline"]),
        "swallow_tokens_per_sec": tokens_per_s(candidate),
        "speedup_metric": f"{claim.verdict.metric} ({binding['verdict']['basis'] if binding else 'n/a'}), {mode} mode",
    }
