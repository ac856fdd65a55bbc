"""The cost log: wall-clock per phase, GPU-hours and money at the configured price; and the plan's estimate."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from artifact.config import ExperimentConfig
from artifact.plan import Plan, count_loads, resident_limit

# The original plan budgeted this for R-2 (RunPod MI300X at 2.69 USD/h): the report states the ratio to it.
ORIGINAL_PLAN_GPU_HOURS = 2.0
ORIGINAL_PLAN_USD = 5.3


def cost_log(phases: Sequence[Mapping[str, Any]], config: ExperimentConfig, *, accelerator: bool) -> dict[str, Any]:
    """A rented accelerator bills wall-clock, so every phase counts, loading and warm-up included."""
    totals: dict[str, float] = defaultdict(float)
    for phase in phases:
        totals[phase["phase"]] += float(phase["seconds"])
    wall_s = sum(totals.values())
    gpu_hours = wall_s / 3600 * config.cost.gpu_count if accelerator else 0.0
    return {
        "phases": [{"phase": name, "seconds": round(seconds, 3)} for name, seconds in totals.items()],
        "wall_s": round(wall_s, 3),
        "accelerator": accelerator,
        "gpu_count": config.cost.gpu_count,
        "gpu_hours": gpu_hours,
        "price_per_gpu_hour_usd": config.cost.price_per_gpu_hour_usd,
        "cost_usd": gpu_hours * config.cost.price_per_gpu_hour_usd,
        "original_plan": {"gpu_hours": ORIGINAL_PLAN_GPU_HOURS, "usd": ORIGINAL_PLAN_USD},
        "fraction_of_original_plan": gpu_hours / ORIGINAL_PLAN_GPU_HOURS,
    }


def estimate(plan: Plan, config: ExperimentConfig) -> dict[str, Any]:
    """Before running: generated tokens / the expected decode rate, plus the model loads the runner will make
    (vLLM keeps one model at a time, so models reload between trials; each load repeats the warm-up)."""
    loads = count_loads(plan, resident_limit(config.engine.name))
    per_load = plan.warmup_generations_per_load
    warmup = loads * (sum(per_load.values()) // max(1, len(per_load)))
    tokens = (plan.measured_generations + warmup) * config.generation.max_new_tokens
    decode_s = tokens / config.cost.expected_decode_tokens_per_second
    load_s = loads * config.cost.expected_load_seconds
    seconds = decode_s + load_s
    gpu_hours = seconds / 3600 * config.cost.gpu_count
    return {
        "generations": plan.measured_generations + warmup,
        "measured_generations": plan.measured_generations,
        "warmup_generations": warmup,
        "model_loads": loads,
        "generated_tokens": tokens,
        "decode_s": decode_s,
        "load_s": load_s,
        "seconds": seconds,
        "gpu_hours": gpu_hours,
        "cost_usd": gpu_hours * config.cost.price_per_gpu_hour_usd,
        "assumptions": {
            "expected_decode_tokens_per_second": config.cost.expected_decode_tokens_per_second,
            "expected_load_seconds": config.cost.expected_load_seconds,
        },
    }
