"""Unit values: from trial records to one value per model, round and unit (prompt, document or batch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

THROUGHPUT_UNIT = "batch"  # throughput mode has one unit per round: the whole batch
Cells = dict[tuple[int, str], dict[str, float]]  # (round, unit) -> values


def measured_records(records: Sequence[Mapping[str, Any]], variant: str = "default") -> list[Mapping[str, Any]]:
    """Measured, successful generations of one engine-settings variant (records before variants were
    introduced belong to "default")."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:  # a resumed run may have served a batch again: the newest record of an id counts
        if record["phase"] == "measure" and record.get("variant", "default") == variant:
            latest[record["record_id"]] = record
    return [record for record in latest.values() if not record.get("error")]


def record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    e2e = record["e2e_s"]
    tokens = record["output_tokens"]
    values = {
        "tokens_per_s": tokens / e2e,
        "ja_chars_per_s": record["output_chars"] / e2e,
        "e2e_s": e2e,
        "time": e2e,
        "chars": float(record["output_chars"]),
        "tokens": float(tokens),
    }
    if record.get("ttft_s") is not None:
        values["ttft_s"] = record["ttft_s"]
        if tokens > 1:
            values["tpot_s"] = (e2e - record["ttft_s"]) / (tokens - 1)
    return values


def cells(records: Sequence[Mapping[str, Any]], model: str, mode: str) -> Cells:
    """One value set per (round, unit): a generation in latency and fixed-text mode; in throughput mode the
    round's batch (its wall time is the slowest request's end-to-end time)."""
    chosen = [record for record in records if record["model"] == model and record["mode"] == mode]
    if mode != "throughput":
        return {(int(record["trial"]), str(record["prompt_id"])): record_metrics(record) for record in chosen}
    by_trial: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for record in chosen:
        by_trial[int(record["trial"])].append(record)
    table: Cells = {}
    for trial, batch in by_trial.items():
        wall = max(record["e2e_s"] for record in batch)
        tokens = sum(record["output_tokens"] for record in batch)
        chars = sum(record["output_chars"] for record in batch)
        values = {"tokens_per_s": tokens / wall, "ja_chars_per_s": chars / wall, "e2e_s": wall, "time": wall,
                  "chars": float(chars), "tokens": float(tokens)}
        first_tokens = [record["ttft_s"] for record in batch if record.get("ttft_s") is not None]
        if first_tokens:
            values["ttft_s"] = float(np.mean(first_tokens))
        table[(trial, THROUGHPUT_UNIT)] = values
    return table


def unit_values(records: Sequence[Mapping[str, Any]], model: str, mode: str) -> dict[str, dict[str, float]]:
    """Per unit (prompt or document; in throughput mode the round's batch): each metric averaged over rounds.
    For per-model summaries; ratios use the full rounds x units table (`cells`)."""
    table = cells(records, model, mode)
    if mode == "throughput":
        return {f"trial-{trial}": values for (trial, _), values in table.items()}
    by_unit: dict[str, list[dict[str, float]]] = defaultdict(list)
    for (_, unit), values in table.items():
        by_unit[unit].append(values)
    return {
        unit: {metric: float(np.mean([values[metric] for values in rows])) for metric in rows[0]
               if all(metric in values for values in rows)}
        for unit, rows in by_unit.items()
    }


def japanese_share(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Japanese script among the generated characters (None for records that predate the count). With real
    weights a low share means the models drifted out of Japanese while forced to keep generating."""
    counted = [record for record in records if "output_japanese_chars" in record]
    chars = sum(record["output_chars"] for record in counted)
    return sum(record["output_japanese_chars"] for record in counted) / chars if counted and chars else None
