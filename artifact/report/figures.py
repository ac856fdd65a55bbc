"""The report's figures (matplotlib, Agg): PNG for the Markdown report, PDF for the LaTeX one.

Every figure reads only results.json and is readable in greyscale: series differ by marker, hatch and line
style, never by colour alone. A figure whose data the run lacks is not drawn; the report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot is imported)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from artifact.report.context import outcome_display  # noqa: E402

FIGURES_DIR = "figures"
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "++")
GREYS = ("0.15", "0.55", "0.8", "0.35", "0.65", "0.95")
PNG_DPI = 150


@dataclass(frozen=True)
class FigureFile:
    key: str
    title: str
    caption: str
    png: str | None  # relative to the run directory; None when not drawn
    pdf: str | None
    missing: str | None = None  # why the figure is not drawn

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "caption": self.caption, "png": self.png, "pdf": self.pdf,
                "missing": self.missing}


def _style() -> dict[str, Any]:
    return {"font.size": 9, "axes.grid": True, "grid.color": "0.85", "grid.linewidth": 0.6, "axes.axisbelow": True,
            "savefig.bbox": "tight", "figure.dpi": 100, "legend.fontsize": 8, "legend.framealpha": 0.9}


def verdict_metric_label(results: Mapping[str, Any]) -> str:
    claim = results["claim"]
    return f"{claim['verdict_metric']['label']} ({claim['verdict_metric']['mode']} mode)"


# --- figure 1: the verdict ratio per unit and overall ---------------------------------------------

def _judged(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [comparison for comparison in results["comparisons"] if (comparison["verdict"].get("ratio") or None)]


def _reference_lines(axis: Any, results: Mapping[str, Any], *, vertical: bool) -> None:
    claim = results["claim"]
    line = axis.axvline if vertical else axis.axhline
    line(claim["threshold"], color="0.0", linestyle="--", linewidth=1.1, label=f"threshold {claim['threshold']:g}")
    line(claim["paper_value"], color="0.35", linestyle=":", linewidth=1.4, label=f"paper's value {claim['paper_value']:g}")
    line(1.0, color="0.6", linestyle="-", linewidth=0.8, label="1 (no speed-up)")


def draw_verdict_ratio(results: Mapping[str, Any], smoke: bool) -> Figure | None:
    judged = _judged(results)
    if not judged:
        return None
    rows = []  # (label, value or None, low, high, is_overall, baseline index)
    for index, comparison in enumerate(judged):
        verdict = comparison["verdict"]
        ratio = verdict["ratio"]
        outcome = outcome_display(verdict, smoke)
        rows.append((f"{comparison['baseline']}: overall\n{outcome}", ratio["estimate"], ratio["low"], ratio["high"], True, index))
        for unit in verdict.get("per_unit") or []:
            rows.append((f"  {unit['unit']}", unit["ratio"], None, None, False, index))
    height = max(2.2, 0.8 + 0.22 * len(rows))
    figure, axis = plt.subplots(figsize=(7.0, height), layout="constrained")
    positions = list(range(len(rows)))[::-1]
    for position, (label, value, low, high, overall, index) in zip(positions, rows, strict=True):
        marker = MARKERS[index % len(MARKERS)]
        if overall:
            axis.errorbar([value], [position], xerr=[[value - low], [high - value]], fmt=marker, color="0.0",
                          markersize=7, capsize=4, linewidth=1.6, markerfacecolor="0.0")
        else:
            axis.plot([value], [position], marker=marker, color="0.35", markersize=4, markerfacecolor="white", linestyle="none")
    axis.set_yticks(positions, [row[0] for row in rows], fontsize=7 if len(rows) > 12 else 8)
    for tick, row in zip(axis.get_yticklabels(), rows, strict=True):
        if row[4]:
            tick.set_fontweight("bold")
    _reference_lines(axis, results, vertical=True)
    confidence = judged[0]["verdict"]["ratio"].get("confidence", 0.95)
    axis.set_xlabel(f"{verdict_metric_label(results)}: a unitless ratio")
    title = f"Verdict ratio with its {confidence:.0%} interval (bars)\nopen markers: single documents/prompts"
    axis.set_title(("SMOKE RUN (tiny models): " if smoke else "") + title, fontsize=9)
    axis.legend(loc="best")
    return figure


# --- figure 2: ratio per round (drift) -------------------------------------------------------------

def draw_drift(results: Mapping[str, Any], smoke: bool) -> Figure | None:
    series = [(comparison, comparison["verdict"].get("per_round") or []) for comparison in _judged(results)]
    series = [(comparison, rounds) for comparison, rounds in series if rounds]
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(7.5, 3.2), layout="constrained")
    for index, (comparison, rounds) in enumerate(series):
        ratio = comparison["verdict"]["ratio"]
        xs = [int(item["round"]) for item in rounds]
        axis.plot(xs, [item["ratio"] for item in rounds], marker=MARKERS[index % len(MARKERS)], color="0.0",
                  linestyle=("-", "--", "-.", ":")[index % 4], markerfacecolor="white", label=f"{comparison['baseline']}: per round")
        axis.axhspan(ratio["low"], ratio["high"], color=GREYS[(index + 2) % len(GREYS)], alpha=0.35,
                     label=f"{comparison['baseline']}: overall interval")
    _reference_lines(axis, results, vertical=False)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("round (0-based, in time order)")
    axis.set_ylabel("ratio candidate / baseline (unitless)")
    axis.set_title(("SMOKE RUN (tiny models): " if smoke else "") + "Verdict ratio per round: a trend means drift", fontsize=9)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return figure


# --- figure 3: tokens per 1,000 characters -----------------------------------------------------------

def draw_token_efficiency(results: Mapping[str, Any], smoke: bool) -> Figure | None:
    efficiency = results.get("token_efficiency")
    if not efficiency or not efficiency.get("corpora"):
        return None
    corpora = efficiency["corpora"]
    tokenizers = list(dict.fromkeys(name for corpus in corpora for name in corpus["models"]))
    width = 0.8 / max(1, len(tokenizers))
    figure, axis = plt.subplots(figsize=(max(4.5, 1.4 * len(corpora) + 2.5), 3.2), layout="constrained")
    for index, name in enumerate(tokenizers):
        xs = [position + (index - (len(tokenizers) - 1) / 2) * width for position in range(len(corpora))]
        values = [corpus["models"].get(name, {}).get("tokens_per_1000_chars", 0.0) for corpus in corpora]
        bars = axis.bar(xs, values, width, color=GREYS[index % len(GREYS)], hatch=HATCHES[index % len(HATCHES)],
                        edgecolor="0.0", linewidth=0.6, label=name)
        axis.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    axis.set_xticks(range(len(corpora)), [f"{corpus['corpus']}\n({corpus['role']})" for corpus in corpora])
    axis.set_ylabel("tokens per 1,000 characters")
    axis.set_xlabel("corpus")
    axis.margins(y=0.12)
    axis.set_title(("SMOKE RUN (toy tokenizers): " if smoke else "")
                   + "Tokens each tokenizer needs\nfor the same text (fewer = shorter)", fontsize=9)
    axis.legend(title="tokenizer", loc="best")
    return figure


# --- figure 4: achieved vs roofline decode speed ------------------------------------------------------

def draw_roofline(results: Mapping[str, Any], smoke: bool) -> Figure | None:
    roofline = results.get("roofline") or {}
    rows = roofline.get("rows") or []
    if not rows:
        return None
    modes = list(dict.fromkeys(row["mode"] for row in rows))
    figure, axes = plt.subplots(1, len(modes), figsize=(3.8 * len(modes) + 0.8, 3.6), squeeze=False, layout="constrained")
    for axis, mode in zip(axes[0], modes, strict=True):
        chosen = [row for row in rows if row["mode"] == mode]
        positions = range(len(chosen))
        axis.bar([p - 0.2 for p in positions], [row["roofline_tokens_per_s"] for row in chosen], 0.4, color="white",
                 edgecolor="0.0", hatch="///", linewidth=0.6, label="roofline (bandwidth limit)")
        bars = axis.bar([p + 0.2 for p in positions], [row["achieved_tokens_per_s"] for row in chosen], 0.4,
                        color="0.3", edgecolor="0.0", linewidth=0.6, label="achieved")
        axis.bar_label(bars, labels=[f"{row['percent_of_roofline']:.0f}%" for row in chosen], fontsize=7, padding=1)
        axis.set_xticks(list(positions), [row["model"] for row in chosen], rotation=15, ha="right", fontsize=8)
        batch = sorted({row["batch"] for row in chosen})
        axis.set_title(f"{mode} mode (batch {', '.join(str(b) for b in batch)})", fontsize=9)
        axis.set_ylabel("decode speed (tokens/s)")
        axis.set_ylim(0, 1.35 * max(max(row["roofline_tokens_per_s"], row["achieved_tokens_per_s"]) for row in chosen))
        axis.legend(loc="upper center", ncol=2, fontsize=7)
    device = (roofline.get("bandwidth") or {}).get("device_name") or ""
    figure.suptitle(("SMOKE RUN: " if smoke else "") + f"Achieved vs roofline decode speed {device}".strip()
                    + " (labels: % of roofline)", fontsize=9)
    return figure


@dataclass(frozen=True)
class FigureSpec:
    key: str
    title: str
    caption: str
    draw: Callable[[Mapping[str, Any], bool], Figure | None]
    missing: str


FIGURES: Sequence[FigureSpec] = (
    FigureSpec("verdict-ratio", "Verdict ratio",
               "The verdict ratio (candidate / baseline) for each baseline with its bootstrap interval, each "
               "document's or prompt's own ratio where the run recorded them, the threshold (dashed) and the "
               "paper's value (dotted).",
               draw_verdict_ratio, "no comparison has a verdict ratio (every verdict is NOT MEASURED)"),
    FigureSpec("drift", "Verdict ratio per round",
               "The verdict ratio of each round in time order, against the overall interval (shaded): a trend means "
               "the machine drifted during the run.",
               draw_drift, "this run's results hold no per-round ratios (older results, or a single round)"),
    FigureSpec("token-efficiency", "Tokens per 1,000 characters",
               "Tokens each model's tokenizer needs per 1,000 characters (Unicode code points) of each corpus.",
               draw_token_efficiency, "tokenizer efficiency was not measured in this run"),
    FigureSpec("roofline", "Achieved vs roofline decode speed",
               "Decode tokens/s achieved beside the bandwidth roofline (copy bandwidth / bytes read per step), per "
               "model and mode; labels give the achieved share of the roofline.",
               draw_roofline, "no roofline: the run measured no device bandwidth (CPU run)"),
)


def write_figures(run_dir: Path, results: Mapping[str, Any]) -> list[FigureFile]:
    """Draw every figure the results allow into run_dir/figures/ (PNG and PDF)."""
    folder = run_dir / FIGURES_DIR
    folder.mkdir(exist_ok=True)
    smoke = bool(results["run"]["smoke"])
    written = []
    for spec in FIGURES:
        png, pdf = folder / f"{spec.key}.png", folder / f"{spec.key}.pdf"
        with plt.rc_context(_style()):
            figure = spec.draw(results, smoke)
            if figure is None:
                png.unlink(missing_ok=True)
                pdf.unlink(missing_ok=True)
                written.append(FigureFile(spec.key, spec.title, spec.caption, None, None, spec.missing))
                continue
            try:
                # Fixed metadata: the same results give the same files.
                figure.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
                figure.savefig(pdf, metadata={"CreationDate": None, "Producer": None, "Creator": None})
            finally:
                plt.close(figure)
        written.append(FigureFile(spec.key, spec.title, spec.caption, f"{FIGURES_DIR}/{png.name}", f"{FIGURES_DIR}/{pdf.name}"))
    return written
