"""The cost log: wall-clock per phase, GPU-hours and money at the configured price; and the plan's estimate.

Money is computed in decimal arithmetic on the GPU-hours as printed, so the printed product is exactly the
printed factors multiplied (a float product rounded separately can disagree with them in the last digit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from artifact.config import ExperimentConfig
from artifact.plan import Plan, count_loads, resident_limit

# The original plan budgeted 2.0 GPU-hours on a RunPod MI300X at 2.69 USD/h and wrote "5.3 USD" for it: the
# product is 5.38. The report states both.
ORIGINAL_PLAN_GPU_HOURS = Decimal("2.0")
ORIGINAL_PLAN_PRICE_USD = Decimal("2.69")
ORIGINAL_PLAN_STATED_USD = Decimal("5.3")
# GPU-hours are printed to a millionth (3.6 ms of one GPU): finer than the phase clock's meaning.
GPU_HOURS_QUANTUM = Decimal("0.000001")
SECONDS_QUANTUM = Decimal("0.001")
# Time of `artifact run` that no phase covers (environment capture between phases, writing files): its own line.
OUTSIDE_PHASES = "outside phases"
CPU_DEVICES = ("cpu",)


def _decimal(value: float | int | str) -> Decimal:
    return Decimal(str(value))


def gpu_hours_of(wall_s: Decimal, gpu_count: int) -> Decimal:
    return (wall_s * gpu_count / 3600).quantize(GPU_HOURS_QUANTUM)


def money(gpu_hours: Decimal, price: Decimal) -> dict[str, Any]:
    """GPU-hours x price, exact, with the arithmetic as text."""
    usd = gpu_hours * price
    return {"gpu_hours": float(gpu_hours), "gpu_hours_text": str(gpu_hours), "price_per_gpu_hour_usd": float(price),
            "price_text": str(price), "cost_usd": float(usd), "cost_usd_text": str(usd),
            "arithmetic": f"{gpu_hours} GPU-hours x {price} USD/GPU-hour = {usd} USD"}


def original_plan() -> dict[str, Any]:
    usd = ORIGINAL_PLAN_GPU_HOURS * ORIGINAL_PLAN_PRICE_USD
    return {"gpu_hours": float(ORIGINAL_PLAN_GPU_HOURS), "price_per_gpu_hour_usd": float(ORIGINAL_PLAN_PRICE_USD),
            "usd": float(usd), "usd_text": str(usd), "usd_stated_in_plan": float(ORIGINAL_PLAN_STATED_USD),
            "arithmetic": f"{ORIGINAL_PLAN_GPU_HOURS} GPU-hours x {ORIGINAL_PLAN_PRICE_USD} USD/GPU-hour = {usd} USD"}


def ran_on_accelerator(models_loaded: Mapping[str, Mapping[str, Any]], environment: Mapping[str, Any] | None,
                       engine_device: str) -> bool:
    """Whether the run held a GPU: the loaded models' devices when models.json exists; otherwise the config's
    device and the GPUs the environment record saw (device "auto" runs on a GPU when there is one)."""
    devices = [str(info.get("device", "")) for info in models_loaded.values()]
    if devices:
        return any(device.startswith(("cuda", "hip", "rocm")) for device in devices)
    if engine_device in CPU_DEVICES:
        return False
    accelerators = (environment or {}).get("accelerators") or {}
    return int(accelerators.get("count") or 0) > 0


def warmup_by_model(phases: Sequence[Mapping[str, Any]],
                    models_loaded: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Untimed warm-up per model (every load of it), and how much of it compiled and captured the decode step
    (the transformers fast path's events): a second model of an already compiled shape shows a short warm-up."""
    seconds: dict[str, Decimal] = {}
    for phase in phases:
        if phase.get("phase") == "warmup" and phase.get("model"):
            seconds[phase["model"]] = seconds.get(phase["model"], Decimal(0)) + _decimal(phase["seconds"])
    rows = []
    for model, total in seconds.items():
        captures = ((models_loaded.get(model) or {}).get("settings") or {}).get("decode_captures") or []
        compiled = sum((_decimal(event.get("seconds", 0)) for event in captures), Decimal(0)).quantize(SECONDS_QUANTUM)
        rows.append({"model": model, "seconds": float(total.quantize(SECONDS_QUANTUM)),
                     "seconds_text": str(total.quantize(SECONDS_QUANTUM)), "decode_steps": len(captures),
                     "compile_capture_s": float(compiled), "compile_capture_text": str(compiled)})
    return rows


def cost_log(phases: Sequence[Mapping[str, Any]], config: ExperimentConfig, *, accelerator: bool) -> dict[str, Any]:
    """A rented accelerator bills wall-clock, so every phase counts, loading, warm-up and the time between
    phases included."""
    totals: dict[str, Decimal] = {}
    for phase in phases:
        totals[phase["phase"]] = totals.get(phase["phase"], Decimal(0)) + _decimal(phase["seconds"])
    rounded = {name: seconds.quantize(SECONDS_QUANTUM) for name, seconds in totals.items()}
    # The total is the sum of the printed lines, so the table adds up.
    wall_s = sum(rounded.values(), Decimal(0))
    gpu_hours = gpu_hours_of(wall_s, config.cost.gpu_count) if accelerator else Decimal(0)
    price = _decimal(config.cost.price_per_gpu_hour_usd)
    return {
        "phases": [{"phase": name, "seconds": float(seconds), "seconds_text": str(seconds)} for name, seconds in rounded.items()],
        "wall_s": float(wall_s),
        "wall_s_text": str(wall_s),
        "accelerator": accelerator,
        "gpu_count": config.cost.gpu_count if accelerator else 0,
        **money(gpu_hours, price),
        "original_plan": original_plan(),
        "fraction_of_original_plan": float(gpu_hours / ORIGINAL_PLAN_GPU_HOURS),
    }


def estimate(plan: Plan, config: ExperimentConfig) -> dict[str, Any]:
    """Before running: generated tokens / the expected decode rate, plus the model loads the runner will make
    (vLLM keeps one model at a time, so models reload between trials; each load repeats the warm-up).
    A run configured for the CPU holds no GPU: it costs no GPU-hours."""
    loads = count_loads(plan, resident_limit(config.engine.name))
    per_load = plan.warmup_generations_per_load
    warmup = loads * (sum(per_load.values()) // max(1, len(per_load)))
    tokens = (plan.measured_generations + warmup) * config.generation.max_new_tokens
    decode_s = tokens / config.cost.expected_decode_tokens_per_second
    load_s = loads * config.cost.expected_load_seconds
    seconds = decode_s + load_s
    accelerator = config.engine.device not in CPU_DEVICES
    gpu_hours = gpu_hours_of(_decimal(round(seconds, 3)), config.cost.gpu_count) if accelerator else Decimal(0)
    return {
        "generations": plan.measured_generations + warmup,
        "measured_generations": plan.measured_generations,
        "warmup_generations": warmup,
        "model_loads": loads,
        "generated_tokens": tokens,
        "decode_s": decode_s,
        "load_s": load_s,
        "seconds": seconds,
        "accelerator": accelerator,
        **money(gpu_hours, _decimal(config.cost.price_per_gpu_hour_usd)),
        "assumptions": {
            "expected_decode_tokens_per_second": config.cost.expected_decode_tokens_per_second,
            "expected_load_seconds": config.cost.expected_load_seconds,
        },
    }
