"""Reports: one context built from results.json feeds the Markdown and the LaTeX template (Jinja2)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2

from artifact.analysis import PER_MODEL_METRICS
from artifact.paths import PROJECT_ROOT

TEMPLATES_DIR = PROJECT_ROOT / "report_templates"
RATIO_LABELS = {
    "ja_chars_per_s": "Japanese chars/s (measured)",
    "ja_chars_per_s_projected": "Japanese chars/s (projected from tokens/s x chars/token)",
    "tokens_per_s": "tokens/s (originally planned metric)",
}
# Below this many resampling units (prompts, or trials in throughput mode) a bootstrap interval is rough.
FEW_UNITS = 8
_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def fmt_number(value: float | str | None, digits: int = 4) -> str:
    """Significant digits: ratios, rates and seconds all stay readable at one setting."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else str(value)


def fmt_interval(interval: dict[str, Any] | None, digits: int = 4) -> str:
    if not interval:
        return "n/a"
    return f"{fmt_number(interval['estimate'], digits)} [{fmt_number(interval['low'], digits)}, {fmt_number(interval['high'], digits)}]"


def tex_escape(text: Any) -> str:
    return re.sub(r"[&%$#_{}~^\\]", lambda match: _TEX_ESCAPES[match.group()], str(text))


def verdict_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for comparison in results["comparisons"]:
        verdict = comparison["verdict"]
        mode_ratios = comparison["ratios"].get(results["claim"]["verdict_metric"]["mode"], {})
        rows.append({
            "baseline": comparison["baseline"],
            "outcome": verdict["outcome"],
            "basis": verdict["basis"],
            "ratio": fmt_interval(verdict["ratio"]),
            "tokens_ratio": fmt_interval(mode_ratios.get("tokens_per_s")),
            "threshold": fmt_number(verdict["threshold"]),
            "statistical_outcome": verdict.get("statistical_outcome", verdict["outcome"]),
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
                few = " (few units: a rough interval)" if interval["n"] < FEW_UNITS else ""
                rows.append({"baseline": comparison["baseline"], "mode": mode, "metric": RATIO_LABELS.get(key, key),
                             "ratio": fmt_interval(interval), "method": interval["method"] + few, "n": str(interval["n"]),
                             "verdict_metric": "yes" if key == comparison["verdict"].get("ratio_key") and mode == results["claim"]["verdict_metric"]["mode"] else ""})
    return rows


def _device_line(results: dict[str, Any]) -> str:
    devices = sorted({info.get("device", "?") for info in results.get("models_loaded", {}).values()}) or ["not recorded"]
    environment = results.get("environment") or {}
    accelerator = environment.get("accelerator") or {}
    name = accelerator.get("name") if isinstance(accelerator, dict) else None
    return ", ".join(devices) + (f" ({name})" if name else "")


def build_context(results: dict[str, Any]) -> dict[str, Any]:
    engine = results.get("engine") or {}
    config = results["config"]
    return {
        "r": results,
        "claim": results["claim"],
        "smoke": results["run"]["smoke"],
        "device_line": _device_line(results),
        "engine_line": engine.get("used", config["engine"]["name"]),
        "fallback_reason": engine.get("fallback_reason"),
        "verdict_rows": verdict_rows(results),
        "model_rows": _model_rows(results),
        "ratio_rows": _ratio_rows(results),
        "metric_labels": PER_MODEL_METRICS,
        "config": config,
        "cost": results["cost"],
        "environment_items": sorted((key, value) for key, value in (results.get("environment") or {}).items()
                                    if not isinstance(value, (dict, list))),
        "environment_sections": sorted((key, value) for key, value in (results.get("environment") or {}).items()
                                       if isinstance(value, (dict, list))),
        "environment_lock": (results.get("environment") or {}).get("lock") or {"lock": None, "note": "not recorded"},
        "noise_warnings": results.get("noise_warnings") or [],
        "models_loaded": results.get("models_loaded") or {},
        "summary": results["summary"],
    }


def _environment(kind: str) -> jinja2.Environment:
    options: dict[str, Any] = {"loader": jinja2.FileSystemLoader(TEMPLATES_DIR), "undefined": jinja2.StrictUndefined,
                               "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
    if kind == "tex":
        options.update(block_start_string="<%", block_end_string="%>", variable_start_string="<<",
                       variable_end_string=">>", comment_start_string="<#", comment_end_string="#>",
                       autoescape=False, finalize=tex_escape)
    environment = jinja2.Environment(**options)
    environment.filters.update(num=fmt_number, ci=fmt_interval, tex=tex_escape)
    return environment


def render(results: dict[str, Any], kind: str) -> str:
    template = _environment(kind).get_template(f"report.{kind}.j2")
    return template.render(**build_context(results))


def render_reports(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    written = []
    for kind in ("md", "tex"):
        path = run_dir / f"report.{kind}"
        path.write_text(render(results, kind), encoding="utf-8")
        written.append(path)
    pdf = compile_pdf(run_dir / "report.tex")
    if pdf:
        written.append(pdf)
    return written


def compile_pdf(tex: Path) -> Path | None:
    """Compile with a TeX engine when one is installed (the report is complete without it)."""
    # pdfLaTeX first: the report is ASCII apart from names, and it needs no system fonts (LuaLaTeX does).
    engine = shutil.which("pdflatex") or shutil.which("lualatex")
    if engine is None:
        return None
    completed = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tex.parent,
                               capture_output=True, text=True, timeout=300, check=False)
    for suffix in (".aux", ".out", ".log"):
        tex.with_suffix(suffix).unlink(missing_ok=True)
    if completed.returncode != 0:
        (tex.parent / "report.pdf.log").write_text(completed.stdout[-20000:])
        return None
    (tex.parent / "report.pdf.log").unlink(missing_ok=True)
    return tex.with_suffix(".pdf")
