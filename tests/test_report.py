"""Reports: figures (real matplotlib), the PDF (real LuaLaTeX), the environment in the .tex, the cost arithmetic,
paper macros, overrides and smoke marking; on a real smoke run and on a hand-made GPU-like copy of its results."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifact.cli import app

runner = CliRunner()
OVERRIDES = ["generation.max_prompts=4", "generation.max_new_tokens=12", "generation.min_new_tokens=12",
             "trials.measured=2", "analysis.bootstrap_resamples=2000"]
FIGURE_KEYS = ("verdict-ratio", "drift", "token-efficiency", "roofline")
# CI sets R2_REQUIRE_TEX=1 after installing TeX: there a missing LuaLaTeX is a failure, not a skip.
REQUIRE_TEX = os.environ.get("R2_REQUIRE_TEX") == "1"


def needs_lualatex() -> None:
    if shutil.which("lualatex") is None:
        if REQUIRE_TEX:
            pytest.fail("R2_REQUIRE_TEX=1 but lualatex is not installed")
        pytest.skip("lualatex not installed (CI installs texlive-luatex texlive-lang-japanese texlive-latex-recommended)")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, tiny_pair) -> Path:
    output = tmp_path_factory.mktemp("runs")
    arguments = [item for pair in OVERRIDES for item in ("--set", pair)]
    result = runner.invoke(app, ["run", "smoke", "--output", str(output), *arguments])
    assert result.exit_code == 0, result.output
    (run_dir,) = output.iterdir()
    return run_dir


def gpu_like_results(smoke_results: dict) -> dict:
    """FIXTURE, NOT A MEASUREMENT: the smoke run's results with GPU-run fields filled in by hand (an H200 in the
    environment, models on cuda:0, per-document and per-round ratios, a roofline), to exercise the GPU rows."""
    results = copy.deepcopy(smoke_results)
    results["run"]["smoke"] = False
    results["run"]["config_name"] = "hand-made-gpu-fixture"
    results["environment"]["accelerators"] = {"vendor": "nvidia", "tool": "nvidia-smi", "count": 1,
                                              "names": ["NVIDIA H200 (FIXTURE)"], "memory_total_mib": [143771],
                                              "driver_version": "000.00-fixture", "cuda_driver_version": "12.8"}
    for info in results["models_loaded"].values():
        info["device"] = "cuda:0"
    results["summary"]["validation_type"] = "R-2 Swallow Inference Efficiency"
    results["summary"].pop("smoke", None)
    from artifact.config import config_from_resolved
    from artifact.cost import cost_log

    results["cost"] = cost_log(results["cost"]["phases"], config_from_resolved(results["config"]), accelerator=True)
    verdict = results["comparisons"][0]["verdict"]
    estimate = verdict["ratio"]["estimate"]
    verdict["per_unit"] = [{"unit": f"doc-{index}", "ratio": estimate * (0.9 + 0.04 * index)} for index in range(6)]
    verdict["per_round"] = [{"round": index, "ratio": estimate * (0.97 + 0.02 * index)} for index in range(4)]
    # Keys of the statistics contract (VERDICT-CONTRACT.md) that older runs lack.
    verdict["display"] = "PASS (confounded; override)"
    results["summary"].update(combined_verdict="PASS", combined_display="PASS (every baseline)",
                              combined_rule="PASS when every baseline passes")
    results["completeness"] = {"planned": 96, "measured": 96, "missing": [], "status": "complete", "planned_from": "plan.json"}
    results["roofline"] = {
        "bandwidth": {"gb_per_s": 4250.0, "device_name": "NVIDIA H200 (FIXTURE)"}, "context_tokens": 192.0,
        "rows": [{"model": model, "mode": mode, "batch": batch, "bytes_per_step": 13_500_000_000,
                  "roofline_tokens_per_s": 315.0 * batch, "achieved_tokens_per_s": 200.0 * batch,
                  "percent_of_roofline": 100 * 200.0 / 315.0}
                 for model in results["models"] for mode, batch in (("latency", 1), ("throughput", 4))]}
    return results


# --- a real smoke run ----------------------------------------------------------------------------------

def test_smoke_run_writes_figures_reports_appendix_and_macros(smoke_run: Path) -> None:
    for key in ("verdict-ratio", "token-efficiency"):
        for suffix in ("png", "pdf"):
            assert (smoke_run / "figures" / f"{key}.{suffix}").stat().st_size > 1000
    import matplotlib.image

    height, width = matplotlib.image.imread(smoke_run / "figures" / "verdict-ratio.png").shape[:2]
    assert width > 500 and height > 200
    assert (smoke_run / "figures" / "verdict-ratio.pdf").read_bytes().startswith(b"%PDF")
    report = (smoke_run / "report.md").read_text(encoding="utf-8")
    assert "![Verdict ratio](figures/verdict-ratio.png)" in report
    assert "![Tokens per 1,000 characters](figures/token-efficiency.png)" in report
    # A CPU run has no roofline and (before issue 10's analysis) no per-round ratios: the report says why.
    assert "Achieved vs roofline decode speed: not drawn; no roofline" in report
    for document in ("report.md", "appendix.md"):
        text = (smoke_run / document).read_text(encoding="utf-8")
        for heading in ("Abstract", "Artifact check-list", "Description", "Installation", "Experiment workflow",
                        "Evaluation and expected results", "Run time and cost", "Experiment customisation"):
            assert f"### {heading}" in text, (document, heading)
    appendix_tex = (smoke_run / "appendix.tex").read_text(encoding="utf-8")
    assert r"\subsection*{Experiment workflow}" in appendix_tex and r"\documentclass" not in appendix_tex


def test_header_shows_gpu_engine_config_overrides_and_smoke(smoke_run: Path) -> None:
    stored = json.loads((smoke_run / "config.resolved.json").read_text())
    assert stored["overrides"] == dict(pair.split("=", 1) for pair in OVERRIDES)
    report = (smoke_run / "report.md").read_text(encoding="utf-8")
    header = report.split("## Verdict")[0]
    assert "**GPU:** none (CPU:" in header and "**Device used:** cpu" in header
    assert "**Engine:** transformers " in header and "`smoke` (**smoke run**)" in header
    for pair in OVERRIDES:
        assert f"`--set {pair}`" in header
    results = json.loads((smoke_run / "results.json").read_text())
    assert "smoke" in results["summary"]["validation_type"].lower() and results["summary"]["smoke"] is True
    shown = results["comparisons"][0]["verdict"]["display"]  # e.g. "INCONCLUSIVE (few units; smoke)"
    assert "smoke" in shown
    assert f"**{shown}**" in report.split("## The claim")[0]
    assert shown in (smoke_run / "paper_macros.tex").read_text(encoding="utf-8")


def test_tex_says_what_the_markdown_says(smoke_run: Path) -> None:
    tex = (smoke_run / "report.tex").read_text(encoding="utf-8")
    environment = json.loads((smoke_run / "environment.json").read_text())
    assert environment["git"]["commit"] in tex
    assert f"transformers {environment['packages']['transformers']}" in tex
    assert environment["cpu"]["model"] in tex
    for section in ("Loaded models", "Environment", "Notes and warnings", "Cost log", "Samples of generated text",
                    "Artifact appendix"):
        assert f"\\section*{{{section}" in tex, section
    for name in ("tiny-expanded", "tiny-baseline"):
        assert name in tex.split(r"\section*{Loaded models}")[1]
    assert r"\includegraphics" in tex and "figures/verdict-ratio.pdf" in tex
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", tex), "the Japanese prompts are in the samples"
    assert r"32,000 $\rightarrow$ 43,176" in tex  # an arrow, never "->" typeset as "-¿"


def test_pdf_compiles_with_japanese_text(smoke_run: Path) -> None:
    needs_lualatex()
    pdf = smoke_run / "report.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF"), (smoke_run / "report.pdf.log").read_text()
    assert not (smoke_run / "report.pdf.log").exists()
    content = pdf.read_bytes()
    assert content.rstrip().endswith(b"%%EOF") and len(content) > 50_000  # figures and Japanese fonts embedded


def test_without_lualatex_the_cli_says_how_to_get_the_pdf(smoke_run: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    copied = tmp_path / "run"
    shutil.copytree(smoke_run, copied)
    (copied / "report.pdf").unlink(missing_ok=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no TeX engine on the PATH
    result = runner.invoke(app, ["report", str(copied)])
    assert result.exit_code == 0, result.output
    assert not (copied / "report.pdf").exists()
    assert "lualatex is not installed" in result.output and "apt-get install" in result.output
    assert "texlive-lang-japanese" in result.output


def test_paper_macros_hold_the_headline_numbers(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    macros = (smoke_run / "paper_macros.tex").read_text(encoding="utf-8")
    defined = re.findall(r"^\\newcommand\{\\([A-Za-z]+)\}\{(.*)\} %", macros, re.MULTILINE)
    names = [name for name, _ in defined]
    assert len(names) == len(set(names)) >= 8
    values = dict(defined)
    ratio = results["comparisons"][0]["verdict"]["ratio"]
    assert values["RtwoTinyBaselineRatio"] == f"{ratio['estimate']:.3g}"
    assert values["RtwoTinyBaselineRatioLow"] == f"{ratio['low']:.3g}"
    assert values["RtwoThreshold"] == "1.7" and values["RtwoPaperValue"] == "1.78"
    assert values["RtwoGPUHours"] == results["cost"]["gpu_hours_text"]
    assert "outside phases" in {phase["phase"] for phase in results["cost"]["phases"]}


# --- the GPU-like fixture ---------------------------------------------------------------------------------

def test_gpu_like_results_draw_every_figure_and_name_the_gpu(smoke_run: Path, tmp_path: Path) -> None:
    from artifact.report import render_reports

    results = gpu_like_results(json.loads((smoke_run / "results.json").read_text()))
    render_reports(tmp_path, results)
    for key in FIGURE_KEYS:
        assert (tmp_path / "figures" / f"{key}.png").stat().st_size > 1000, key
        assert (tmp_path / "figures" / f"{key}.pdf").read_bytes().startswith(b"%PDF"), key
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**GPU:** 1 x NVIDIA H200 (FIXTURE) (driver 000.00-fixture)" in report
    assert "**Device used:** cuda:0" in report
    assert "not drawn" not in report
    assert "**PASS (confounded; override)**" in report
    appendix = (tmp_path / "appendix.md").read_text(encoding="utf-8")
    assert "Combined over baselines: **PASS (every baseline)** (PASS when every baseline passes)" in appendix
    assert "Completeness: complete (96 of 96 planned generations measured)" in appendix
    assert r"\newcommand{\RtwoCombinedVerdict}{PASS (every baseline)}" in (tmp_path / "paper_macros.tex").read_text()
    assert f"**{results['cost']['arithmetic']}**" in report and "GPU-hours x 2.69 USD/GPU-hour" in report
    tex = (tmp_path / "report.tex").read_text(encoding="utf-8")
    assert "1 x NVIDIA H200 (FIXTURE)" in tex and "figures/roofline.pdf" in tex and "figures/drift.pdf" in tex
    if shutil.which("lualatex") or REQUIRE_TEX:
        assert (tmp_path / "report.pdf").is_file(), (tmp_path / "report.pdf.log").read_text()


# --- cost arithmetic --------------------------------------------------------------------------------------

def _config(**overrides: str):
    from artifact.config import load_config

    return load_config("smoke", overrides)


def test_cost_is_exact_and_counts_the_whole_wall_time() -> None:
    from artifact.cost import OUTSIDE_PHASES, cost_log

    phases = [{"phase": "prepare", "seconds": 10.0004}, {"phase": "load", "seconds": 3599.5},
              {"phase": "measure", "seconds": 3600.0}, {"phase": "load", "seconds": 0.25},
              {"phase": OUTSIDE_PHASES, "seconds": 1.2346}]
    cost = cost_log(phases, _config(**{"cost.gpu_count": "2", "cost.price_per_gpu_hour_usd": "2.69"}), accelerator=True)
    lines = {phase["phase"]: phase["seconds_text"] for phase in cost["phases"]}
    assert lines == {"prepare": "10.000", "load": "3599.750", "measure": "3600.000", OUTSIDE_PHASES: "1.235"}
    assert cost["wall_s_text"] == "7210.985"  # the sum of the printed lines
    assert cost["gpu_hours_text"] == "4.006103"  # 7210.985 s x 2 GPUs / 3600 = 4.0061027..., to a millionth
    assert Decimal(cost["gpu_hours_text"]) * Decimal(cost["price_text"]) == Decimal(cost["cost_usd_text"])
    assert cost["cost_usd_text"] == "10.77641707"
    assert cost["arithmetic"] == "4.006103 GPU-hours x 2.69 USD/GPU-hour = 10.77641707 USD"
    assert cost["original_plan"]["usd_text"] == "5.380" and cost["original_plan"]["usd_stated_in_plan"] == 5.3
    cpu = cost_log(phases, _config(), accelerator=False)
    assert cpu["gpu_hours"] == 0 and cpu["cost_usd"] == 0 and cpu["wall_s_text"] == "7210.985"


def test_gpu_hours_without_models_json_and_cpu_plans_cost_nothing() -> None:
    from artifact.cost import estimate, ran_on_accelerator
    from artifact.pipeline import load_plan

    h200 = {"accelerators": {"count": 1, "names": ["NVIDIA H200"]}}
    assert ran_on_accelerator({}, h200, "auto") is True  # models.json missing: the environment decides
    assert ran_on_accelerator({}, h200, "cpu") is False
    assert ran_on_accelerator({}, {"accelerators": {"count": 0}}, "auto") is False
    assert ran_on_accelerator({"m": {"device": "cuda:0"}}, None, "auto") is True
    cpu = _config()
    guess = estimate(load_plan(cpu), cpu)
    assert guess["accelerator"] is False and guess["gpu_hours"] == 0 and guess["cost_usd"] == 0
    gpu = _config(**{"engine.device": "cuda"})
    guess = estimate(load_plan(gpu), gpu)
    assert guess["accelerator"] is True and guess["gpu_hours"] > 0
    assert Decimal(guess["gpu_hours_text"]) * Decimal(guess["price_text"]) == Decimal(guess["cost_usd_text"])


def test_re_rendering_without_models_json_keeps_the_gpu_hours(smoke_run: Path, tmp_path: Path) -> None:
    copied = tmp_path / "run"
    shutil.copytree(smoke_run, copied)
    environment = json.loads((copied / "environment.json").read_text())
    environment["accelerators"] = {"vendor": "nvidia", "count": 1, "names": ["NVIDIA H200 (FIXTURE)"]}
    (copied / "environment.json").write_text(json.dumps(environment))
    stored = json.loads((copied / "config.resolved.json").read_text())
    stored["config"]["engine"]["device"] = "auto"  # as a GPU config has it
    (copied / "config.resolved.json").write_text(json.dumps(stored))
    (copied / "models.json").unlink()
    result = runner.invoke(app, ["report", str(copied)])
    assert result.exit_code == 0, result.output
    cost = json.loads((copied / "results.json").read_text())["cost"]
    assert cost["accelerator"] is True and cost["gpu_hours"] > 0
    assert f"**{cost['arithmetic']}**" in (copied / "report.md").read_text(encoding="utf-8")


def test_tex_escape_handles_arrows_controls_and_replacement_characters() -> None:
    from artifact.report.formatting import tex_breakable, tex_escape

    assert tex_escape("32,000 -> 43,176 & 5%_x") == r"32,000 $\rightarrow$ 43,176 \& 5\%\_x"
    assert tex_escape("a\rb\x1b\ufffd") == "a b ?"
    assert str(tex_breakable("x" * 30)) == "x" * 24 + r"\allowbreak{}" + "x" * 6
