"""Harness overhead: the share of measured wall time spent outside the engine calls (issue 14's < 1% goal).

The runner logs the wall time of every measured block (phases.jsonl, phase "measure") and, per generation, the
wall time of the engine call that served it (`call_wall_s`, synchronise-to-synchronise). What is left of the
block time -- writing records, decoding the emitted text, progress output, the clock reads themselves -- is
the harness's own cost, paid between calls and never inside a timed interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def harness_overhead(phases: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Block wall time vs the engine calls inside it; None when the run has no measured block.

    A batch's records share one call: each carries `call_wall_s / batch_size`, so their sum is the call once."""
    measured_s = sum(float(phase["seconds"]) for phase in phases if phase.get("phase") == "measure")
    calls = [record for record in records if record.get("phase") == "measure" and record.get("call_wall_s") is not None]
    if measured_s <= 0 or not calls:
        return None
    in_calls_s = sum(float(record["call_wall_s"]) / max(int(record.get("batch_size") or 1), 1) for record in calls)
    outside_s = max(measured_s - in_calls_s, 0.0)
    return {
        "measured_blocks_s": measured_s,
        "engine_calls_s": in_calls_s,
        "outside_calls_s": outside_s,
        "fraction": outside_s / measured_s,
        "per_generation_s": outside_s / len(calls),
        "generations": len(calls),
        "method": "sum of measured block wall times (phases.jsonl) minus the engine calls' wall times (trials.jsonl)",
    }
