"""Paired ratios candidate / baseline over the full rounds x units table, with intervals over both levels.

Estimators (the formula text goes into results.json and the report so a reviewer can recompute it):
- fixed_text, Japanese characters/s: every model emits the same text T of each document, so the ratio of
  characters per second is the ratio of times, R = sum_{r,d} t_baseline(r,d) / sum_{r,d} t_candidate(r,d).
- any other rate metric v: R = sum_{r,u} v_candidate(r,u) / sum_{r,u} v_baseline(r,u) (ratio of mean rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifact.analysis.units import Cells
from artifact.stats import CrossedInterval, crossed_ratio_of_sums, product_of_ratios

FIXED_TEXT = "fixed_text"


@dataclass(frozen=True)
class Estimator:
    numerator: tuple[str, str]  # (which model: "candidate" | "baseline", which value)
    denominator: tuple[str, str]
    formula: str


def estimator(mode: str, metric: str) -> Estimator:
    if mode == FIXED_TEXT and metric == "ja_chars_per_s":
        return Estimator(("baseline", "time"), ("candidate", "time"),
                         "R = sum over rounds r and documents d of t_baseline(r, d) / sum over r, d of t_candidate(r, d); "
                         "t = e2e_s of the fixed_text record (trial = r, prompt_id = d). Both models emit the same text, "
                         "so R is also the ratio of Japanese characters per second.")
    unit = "documents d" if mode == FIXED_TEXT else ("rounds (one batch each)" if mode == "throughput" else "prompts p")
    return Estimator(("candidate", metric), ("baseline", metric),
                     f"R = sum over rounds r and {unit} of {metric}_candidate / the same sum of {metric}_baseline "
                     f"({metric} of each record; trial = r). Paired cell by cell.")


@dataclass(frozen=True)
class PairedTable:
    rounds: list[int]
    units: list[str]
    numerator: np.ndarray  # rounds x units
    denominator: np.ndarray
    dropped_cells: int  # paired cells left out to keep the table complete (a partial run)


def complete_table(pairs: dict[tuple[int, str], tuple[float, float]]) -> PairedTable | None:
    """The largest complete rounds x units table of paired cells. A partial run may miss cells; dropping the
    emptiest rounds one by one, keep the choice that leaves the most cells (ties: more rounds)."""
    if not pairs:
        return None
    rounds = sorted({round_ for round_, _ in pairs})
    emptiest_first = sorted(rounds, key=lambda round_: sum(1 for r, _ in pairs if r == round_))
    best: tuple[int, int, list[int], list[str]] | None = None
    for drop in range(len(rounds)):
        kept = [round_ for round_ in rounds if round_ not in emptiest_first[:drop]]
        units = sorted(set.intersection(*({unit for r, unit in pairs if r == round_} for round_ in kept)))
        score = (len(kept) * len(units), len(kept))
        if units and (best is None or score > best[:2]):
            best = (*score, kept, units)
    if best is None:
        return None
    _, _, kept, units = best
    numerator = np.array([[pairs[(round_, unit)][0] for unit in units] for round_ in kept])
    denominator = np.array([[pairs[(round_, unit)][1] for unit in units] for round_ in kept])
    return PairedTable(kept, units, numerator, denominator, len(pairs) - len(kept) * len(units))


def paired_table(cells_c: Cells, cells_b: Cells, mode: str, metric: str) -> tuple[PairedTable | None, Estimator]:
    rule = estimator(mode, metric)
    sides = {"candidate": cells_c, "baseline": cells_b}
    pairs = {}
    for key in sorted(set(cells_c) & set(cells_b)):
        top = sides[rule.numerator[0]][key].get(rule.numerator[1])
        bottom = sides[rule.denominator[0]][key].get(rule.denominator[1])
        if top is not None and bottom is not None:
            pairs[key] = (top, bottom)
    return complete_table(pairs), rule


def ratio_entry(interval: CrossedInterval, table: PairedTable, rule: Estimator, factor: float = 1.0) -> dict[str, Any]:
    """The interval plus what a reviewer needs to recompute it: per-round and per-unit ratios, the formula."""
    per_round = [{"round": round_, "ratio": factor * float(table.numerator[i].sum() / table.denominator[i].sum())}
                 for i, round_ in enumerate(table.rounds)]
    per_unit = [{"unit": unit, "ratio": factor * float(table.numerator[:, j].sum() / table.denominator[:, j].sum())}
                for j, unit in enumerate(table.units)]
    return {**interval.to_dict(), "estimator": rule.formula, "per_round": per_round, "per_unit": per_unit,
            "rounds": table.rounds, "dropped_cells": table.dropped_cells}


def ratio(cells_c: Cells, cells_b: Cells, mode: str, metric: str, *, confidence: float) -> dict[str, Any] | None:
    table, rule = paired_table(cells_c, cells_b, mode, metric)
    if table is None:
        return None
    return ratio_entry(crossed_ratio_of_sums(table.numerator, table.denominator, confidence=confidence), table, rule)


def token_count_ratio(baseline_tokens: Sequence[int], candidate_tokens: Sequence[int], *,
                      confidence: float) -> CrossedInterval:
    """sum(baseline tokens) / sum(candidate tokens) over the reference corpus's documents (one level: documents)."""
    return crossed_ratio_of_sums(np.asarray([baseline_tokens], dtype=float), np.asarray([candidate_tokens], dtype=float),
                                 confidence=confidence)


def projected_ratio(cells_c: Cells, cells_b: Cells, mode: str, token_counts: tuple[Sequence[int], Sequence[int]], *,
                    confidence: float) -> dict[str, Any] | None:
    """Japanese characters/s projected: (tokens/s ratio over the timing table) x (baseline / candidate tokens
    of the same reference documents). Independent samples, so their relative errors add."""
    table, _ = paired_table(cells_c, cells_b, mode, "tokens_per_s")
    if table is None:
        return None
    speed = crossed_ratio_of_sums(table.numerator, table.denominator, confidence=confidence)
    tokens = token_count_ratio(token_counts[1], token_counts[0], confidence=confidence)
    rule = Estimator(("candidate", "tokens_per_s"), ("baseline", "tokens_per_s"),
                     "R = [sum over r, p of tokens_per_s_candidate / the same sum for the baseline] x [sum over reference "
                     "documents of baseline tokens / sum of candidate tokens]")
    return ratio_entry(product_of_ratios(speed, tokens, confidence=confidence), table, rule, factor=tokens.estimate)
