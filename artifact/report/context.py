"""One context built from results.json feeds every template (Markdown, LaTeX, the artifact appendix)."""

from __future__ import annotations

from typing import Any

from artifact.analysis import PER_MODEL_METRICS
from artifact.analysis.verdicts import FEW_UNITS  # below this many paired units an interval is rough
from artifact.report.formatting import fmt_interval, fmt_number
from artifact.measure.warmup import OUTLIER_FACTOR
from artifact.standin import standins_in_results

RATIO_LABELS = {
    "ja_chars_per_s": "Japanese chars/s (measured)",
    "ja_chars_per_s_projected": "Japanese chars/s (projected from tokens/s x chars/token)",
    "tokens_per_s": "tokens/s (originally planned metric)",
}
SMOKE_MARK = "smoke"


def outcome_display(verdict: dict[str, Any], smoke: bool) -> str:
    """The verdict as printed: the analysis's own display text when it has one; a smoke run says so."""
    text = verdict.get("display") or verdict["outcome"]
    return f"{text} ({SMOKE_MARK})" if smoke and SMOKE_MARK not in text.lower() else text


def verdict_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    smoke = bool((results.get("run") or {}).get("smoke"))
    rows = []
    for comparison in results["comparisons"]:
        verdict = comparison["verdict"]
        mode_ratios = comparison["ratios"].get(results["claim"]["verdict_metric"]["mode"], {})
        inside = verdict.get("paper_value_inside")
        rows.append({
            "baseline": comparison["baseline"],
            "outcome": verdict["outcome"],
            "display": outcome_display(verdict, smoke),
            "basis": verdict["basis"],
            "ratio": fmt_interval(verdict["ratio"]),
            "tokens_ratio": fmt_interval(mode_ratios.get("tokens_per_s")),
            "threshold": fmt_number(verdict["threshold"]),
            "statistical_outcome": verdict.get("statistical_outcome", verdict["outcome"]),
            "few_units": "few units" if verdict.get("few_units") else "",
            "paper_inside": "n/a" if inside is None else ("inside" if inside else "outside"),
            "n": "n/a" if not verdict["ratio"] else f"{verdict['ratio']['n']} x {verdict['ratio'].get('n_rounds', '?')}",
        })
    return rows


def _model_rows(results: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    by_mode: dict[str, list[dict[str, str]]] = {}
    for name, model in results["models"].items():
        for mode, metrics in model["metrics"].items():
            by_mode.setdefault(mode, []).append({
                "name": name, "role": model["role"], "generations": str(model["generations"]),
                **{metric: fmt_interval(metrics.get(metric)) for metric in PER_MODEL_METRICS},
            })
    return by_mode


def _ratio_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for comparison in results["comparisons"]:
        for mode, ratios in comparison["ratios"].items():
            for key, interval in ratios.items():
                few = " (few units: a rough interval)" if interval["n"] < FEW_UNITS and mode != "throughput" else ""
                rows.append({"baseline": comparison["baseline"], "mode": mode, "metric": RATIO_LABELS.get(key, key),
                             "ratio": fmt_interval(interval), "method": interval["method"] + few,
                             "n": f"{interval['n']} x {interval.get('n_rounds', '?')} rounds",
                             "verdict_metric": "yes" if key == comparison["verdict"].get("ratio_key") and mode == results["claim"]["verdict_metric"]["mode"] else ""})
    return rows


def gpu_line(environment: dict[str, Any] | None) -> str:
    """GPU name(s) and count from environment.json's `accelerators` (what nvidia-smi or rocm-smi saw)."""
    accelerators = (environment or {}).get("accelerators") or {}
    count = int(accelerators.get("count") or 0)
    if count == 0:
        cpu = (environment or {}).get("cpu") or {}
        where = f" (CPU: {cpu.get('model') or 'unknown'}, {cpu.get('logical_cores') or '?'} logical cores)" if cpu else ""
        return f"none{where}"
    names = " / ".join(accelerators.get("names") or ["unnamed"])
    driver = accelerators.get("driver_version")
    return f"{count} x {names}" + (f" (driver {driver})" if driver else "")


def device_line(results: dict[str, Any]) -> str:
    """Where the models ran (models.json's devices), e.g. "cuda:0"; "not recorded" when models.json is missing."""
    devices = sorted({str(info.get("device", "?")) for info in (results.get("models_loaded") or {}).values()})
    return ", ".join(devices) or "not recorded"


def engine_line(results: dict[str, Any]) -> str:
    engine = results.get("engine") or {}
    name = engine.get("used", results["config"]["engine"]["name"])
    packages = ((results.get("environment") or {}).get("packages") or {})
    version = packages.get("vllm" if name == "vllm" else "transformers")
    return f"{name} {version}" if version else str(name)


def override_list(results: dict[str, Any]) -> list[str]:
    """The run's `--set` overrides as typed (absent from runs made before they were stored)."""
    overrides = (results.get("run") or {}).get("overrides") or {}
    return [f"{key}={value}" for key, value in overrides.items()]


def environment_rows(environment: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The environment as (item, value) rows, the same for every report: GPU, driver, runtimes, packages, commit."""
    if not environment:
        return [("environment", "not recorded (environment.json missing)")]
    accelerators = environment.get("accelerators") or {}
    runtime = environment.get("runtime") or {}
    build = runtime.get("torch_build") or {}
    cpu = environment.get("cpu") or {}
    python = environment.get("python") or {}
    system = environment.get("os") or {}
    git = environment.get("git") or {}
    container = environment.get("container") or {}
    rows = [
        ("GPU", gpu_line(environment)),
        ("GPU memory (MiB)", ", ".join(str(value) for value in accelerators.get("memory_total_mib") or []) or "n/a"),
        ("GPU driver", str(accelerators.get("driver_version") or "n/a")),
        ("CUDA (driver)", str(accelerators.get("cuda_driver_version") or "n/a")),
        ("torch build", f"CUDA {build.get('cuda') or '-'}, HIP {build.get('hip') or '-'}"),
        ("CUDA toolkit / ROCm", f"{runtime.get('cuda_toolkit') or '-'} / {runtime.get('rocm') or '-'}"),
        ("CPU", f"{cpu.get('model') or 'n/a'}, {cpu.get('logical_cores') or '?'} logical cores, {cpu.get('memory_gib') or '?'} GiB"),
        ("OS", str(system.get("platform") or "n/a")),
        ("Python", f"{python.get('version') or '?'} ({python.get('implementation') or '?'})"),
        ("git commit", f"{git.get('commit') or 'n/a'}" + (" (uncommitted changes)" if git.get("dirty") else "")
         + (f" [{git['source']}]" if git.get("source") and git.get("source") != "git" else "")),
        ("container", "yes" if container.get("in_container") else "no"),
        ("NUMA balancing", str(environment.get("numa_balancing"))),
        ("captured at", str(environment.get("captured_at") or "n/a")),
    ]
    for key in sorted(container):
        if key != "in_container":
            rows.append((key, str(container[key])))
    packages = environment.get("packages") or {}
    installed = [f"{name} {version}" for name, version in packages.items() if version]
    absent = [name for name, version in packages.items() if not version]
    rows.append(("packages", ", ".join(installed) or "n/a"))
    if absent:
        rows.append(("packages not installed", ", ".join(absent)))
    return rows


def notes(results: dict[str, Any]) -> list[str]:
    """Everything a reviewer must be told that no table shows: the engine's notes, NOT MEASURED reasons, loads."""
    found: list[str] = []
    engine = results.get("engine") or {}
    if engine.get("fallback_reason"):
        found.append(f"The engine fell back to transformers: {engine['fallback_reason']}.")
    if engine.get("recompiled_measured_calls"):
        found.append(f"{engine['recompiled_measured_calls']} measured call(s) compiled a shape the warm-up had not "
                     "covered and were timed again (the compiling call is not recorded).")
    if engine.get("skipped_variants"):
        found.append(f"Ablation not run: {', '.join(map(str, engine['skipped_variants']))} (it changes a vLLM "
                     f"setting; this run used {engine.get('used')}).")
    for comparison in results["comparisons"]:
        verdict = comparison["verdict"]
        if verdict.get("reason"):
            found.append(f"{comparison['baseline']}: {verdict['outcome']} -- {verdict['reason']}.")
    for name, info in (results.get("models_loaded") or {}).items():
        for note in info.get("notes") or []:
            found.append(f"{name}: {note}")
    return found



def build_context(results: dict[str, Any], figures: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    engine = results.get("engine") or {}
    config = results["config"]
    environment = results.get("environment")
    return {
        "r": results,
        "claim": results["claim"],
        "smoke": results["run"]["smoke"],
        "gpu_line": gpu_line(environment),
        "device_line": device_line(results),
        "engine_line": engine_line(results),
        "fallback_reason": engine.get("fallback_reason"),
        "overrides": override_list(results),
        "verdict_rows": verdict_rows(results),
        "model_rows": _model_rows(results),
        "ratio_rows": _ratio_rows(results),
        "metric_labels": PER_MODEL_METRICS,
        "config": config,
        "cost": results["cost"],
        "environment_rows": environment_rows(environment),
        "noise_warnings": results.get("noise_warnings") or [],
        "notes": notes(results),
        "models_loaded": results.get("models_loaded") or {},
        "summary": results["summary"],
        "tokenizer_standins": standins_in_results(results),
        "outlier_factor": OUTLIER_FACTOR,
        "environment_lock": (results.get("environment") or {}).get("lock") or {"lock": None, "note": "not recorded"},
        "samples": results.get("samples") or {"shown": False, "reason": "not recorded in this run", "rows": []},
        "figures": figures or [],
    }
