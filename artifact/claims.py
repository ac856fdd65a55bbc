"""Claim definitions (one TOML file each in artifact/claims/) and the verdict rule."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from artifact.errors import ConfigError
from artifact.toml_fields import Table, did_you_mean, read_toml

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
SPEED_METRICS = ("ja_chars_per_s", "tokens_per_s")
VERDICT_MODES = ("latency", "throughput", "fixed_text")

PASS, FAIL, INCONCLUSIVE, CONFOUNDED = "PASS", "FAIL", "INCONCLUSIVE", "CONFOUNDED"
PARTIAL, INSUFFICIENT, NOT_MEASURED = "PARTIAL", "INSUFFICIENT", "NOT MEASURED"
OVERRIDE_MARKER = "confounded; override"
COMBINED_RULE = (
    "Combined verdict over baselines (intersection-union test): PASS only when every non-confounded baseline "
    "PASSes; FAIL when any of them FAILs; otherwise INCONCLUSIVE. The claim must hold against each baseline, so "
    "each comparison is tested at the full level and no multiplicity correction is needed. A baseline that is "
    "CONFOUNDED (and not overridden) is left out and named; any PARTIAL, INSUFFICIENT or NOT MEASURED "
    "comparison makes the combined verdict the same. The order of baselines in the config plays no part; "
    "speedup_ratio is the smallest ratio among the judged baselines (the one that binds)."
)


@dataclass(frozen=True)
class MetricSpec:
    metric: str
    label: str
    why: str
    mode: str = "latency"
    reference: float | None = None


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    statement: str
    source: str
    paper_value: float
    threshold: float
    experiment: str
    verdict: MetricSpec
    secondary: MetricSpec | None
    informational: tuple[MetricSpec, ...]
    path: Path


def _metric(table: Table, allowed: tuple[str, ...]) -> MetricSpec:
    spec = MetricSpec(
        metric=table.choice("metric", allowed, required=True),
        label=table.get("label", str, required=True),
        why=table.get("why", str, required=True),
        mode=table.choice("mode", VERDICT_MODES, "latency"),
        reference=table.get("reference", float),
    )
    table.check_no_unknown()
    return spec


def parse_claim(path: Path) -> Claim:
    top = Table(read_toml(path), path, "")
    secondary = top.sub("secondary") if "secondary" in top.data else None
    raw_informational = top.get("informational", list, [])
    claim = Claim(
        id=top.get("id", str, required=True),
        title=top.get("title", str, required=True),
        statement=top.get("statement", str, required=True),
        source=top.get("source", str, required=True),
        paper_value=top.get("paper_value", float, required=True),
        threshold=top.get("threshold", float, required=True),
        experiment=top.get("experiment", str, required=True),
        verdict=_metric(top.sub("verdict"), SPEED_METRICS),
        secondary=_metric(secondary, ("token_length_ratio",)) if secondary else None,
        informational=tuple(
            _metric(Table(item, path, f"informational[{index}]"), SPEED_METRICS)
            for index, item in enumerate(raw_informational)
        ),
        path=path,
    )
    top.check_no_unknown()
    if claim.threshold <= 0:
        raise top.fail("threshold", "expected a positive ratio")
    return claim


def claim_to_dict(claim: Claim) -> dict[str, Any]:
    """The claim as judged, stored in the run directory: a later edit of the claim file cannot change an old
    run's verdict when it is re-rendered."""
    return json.loads(json.dumps(asdict(claim), default=str))


def claim_from_dict(data: dict[str, Any]) -> Claim:
    return Claim(
        **{**data, "verdict": MetricSpec(**data["verdict"]),
           "secondary": MetricSpec(**data["secondary"]) if data.get("secondary") else None,
           "informational": tuple(MetricSpec(**item) for item in data["informational"]),
           "path": Path(data["path"])}
    )


def all_claims() -> dict[str, Claim]:
    claims: dict[str, Claim] = {}
    for path in sorted(CLAIMS_DIR.glob("*.toml")):
        claim = parse_claim(path)
        if claim.id in claims:
            raise ConfigError(f"{path}: claim id {claim.id!r} is also declared in {claims[claim.id].path}")
        claims[claim.id] = claim
    return claims


def get_claim(claim_id: str) -> Claim:
    claims = all_claims()
    if claim_id not in claims:
        raise ConfigError(
            f"unknown claim {claim_id!r}{did_you_mean(claim_id, list(claims))}; registered claims: {', '.join(claims)}"
        )
    return claims[claim_id]


def verdict(low: float, high: float, threshold: float) -> str:
    """PASS when the whole interval clears the threshold, FAIL when it lies wholly below, else INCONCLUSIVE."""
    if low >= threshold:
        return PASS
    if high < threshold:
        return FAIL
    return INCONCLUSIVE


def display(outcome: str, markers: list[str]) -> str:
    """The verdict as shown everywhere: the outcome, then what qualifies it, e.g. "PASS (confounded; override)"."""
    return f"{outcome} ({'; '.join(markers)})" if markers else outcome


def combined_verdict(outcomes: dict[str, str]) -> str:
    """One verdict for the claim from each baseline's outcome (see COMBINED_RULE); independent of order."""
    judged = [outcome for outcome in outcomes.values() if outcome != CONFOUNDED]
    if not judged:
        return CONFOUNDED if outcomes else NOT_MEASURED
    for blocking in (NOT_MEASURED, INSUFFICIENT, PARTIAL):
        if blocking in judged:
            return blocking
    if FAIL in judged:
        return FAIL
    return PASS if all(outcome == PASS for outcome in judged) else INCONCLUSIVE
