"""paper_macros.tex: one \\newcommand per headline number, so a paper cites the run instead of copying it."""

from __future__ import annotations

import re
from typing import Any

from artifact.report.context import gpu_line, outcome_display
from artifact.report.formatting import fmt_number, tex_escape

PREFIX = "Rtwo"
_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def macro_name(*parts: str) -> str:
    """A TeX control word from free text: letters only (digits spelled out), CamelCase.
    "swallow-7b-nve", "Ratio" -> "SwallowSevenbNveRatio"."""
    words = []
    for part in parts:
        spelled = re.sub(r"\d", lambda match: f" {_DIGITS[int(match.group())]} ", part)
        words += [word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z]+", spelled) if word]
    return PREFIX + "".join(words)


def headline_values(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(macro name, value, what it is) for each headline number of a run."""
    smoke = bool(results["run"]["smoke"])
    claim = results["claim"]
    cost = results["cost"]
    values = [
        (macro_name("Threshold"), fmt_number(claim["threshold"]), "verdict threshold"),
        (macro_name("Paper", "Value"), fmt_number(claim["paper_value"]), "the paper's value"),
        (macro_name("Smoke"), "yes" if smoke else "no", "whether this run is a smoke run (tiny models)"),
        (macro_name("GPU"), gpu_line(results.get("environment")), "GPUs of the run"),
        (macro_name("Wall", "Seconds"), fmt_number(cost["wall_s"], 6), "wall-clock of the run (s)"),
        (macro_name("GPU", "Hours"), str(cost.get("gpu_hours_text", cost["gpu_hours"])), "GPU-hours"),
        (macro_name("Cost", "USD"), str(cost.get("cost_usd_text", cost["cost_usd"])), "cost (USD)"),
    ]
    summary = results.get("summary") or {}
    if summary.get("combined_verdict"):
        values.append((macro_name("Combined", "Verdict"), str(summary.get("combined_display") or summary["combined_verdict"]),
                       "combined verdict over baselines"))
    for comparison in results["comparisons"]:
        baseline = comparison["baseline"]
        verdict = comparison["verdict"]
        values.append((macro_name(baseline, "Verdict"), outcome_display(verdict, smoke), f"verdict vs {baseline}"))
        ratio = verdict.get("ratio")
        if ratio:
            for key in ("estimate", "low", "high"):
                values.append((macro_name(baseline, "Ratio", "" if key == "estimate" else key),
                               fmt_number(ratio[key], 3), f"verdict ratio vs {baseline} ({key})"))
    for corpus in (results.get("token_efficiency") or {}).get("corpora", []):
        if corpus.get("role") != "reference":
            continue
        for baseline, interval in corpus["token_length_ratio"].items():
            values.append((macro_name(baseline, "Token", "Length", "Ratio"), fmt_number(interval["estimate"], 3),
                           f"token length candidate / {baseline} on {corpus['corpus']}"))
    return values


def render_macros(results: dict[str, Any]) -> str:
    lines = [f"% Headline numbers of run {results['run'].get('directory', '')} (claim {results['claim']['id']}).",
             "% \\input{paper_macros} in a paper; every number comes from results.json."]
    if results["run"]["smoke"]:
        lines.append("% SMOKE RUN: tiny models, a pipeline check; these numbers are not evidence about Swallow.")
    seen: set[str] = set()
    for name, value, what in headline_values(results):
        if name in seen:  # two baselines whose names differ only in punctuation
            continue
        seen.add(name)
        lines.append(f"\\newcommand{{\\{name}}}{{{tex_escape(value)}}} % {what}")
    return "\n".join(lines) + "\n"
