"""Rendering: the Jinja2 environments, and every file a run directory's report consists of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from artifact.paths import PROJECT_ROOT
from artifact.report.context import build_context
from artifact.report.figures import write_figures
from artifact.report.formatting import fmt_bytes, fmt_interval, fmt_number, tex_breakable, tex_escape, tex_finalize
from artifact.report.macros import render_macros
from artifact.report.pdf import compile_pdf

TEMPLATES_DIR = PROJECT_ROOT / "report_templates"
# Rendered beside each report: the artifact-description appendix on its own, for a paper's submission.
DOCUMENTS = {"report": ("md", "tex"), "appendix": ("md", "tex")}
MACROS_FILE = "paper_macros.tex"


def project_path(path: str) -> str:
    """A path inside the project as the reader's checkout has it (relative), any other path as it is."""
    try:
        return str(Path(path).relative_to(PROJECT_ROOT))
    except ValueError:
        return path


def _environment(kind: str) -> jinja2.Environment:
    options: dict[str, Any] = {"loader": jinja2.FileSystemLoader(TEMPLATES_DIR), "undefined": jinja2.StrictUndefined,
                               "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
    if kind == "tex":
        options.update(block_start_string="<%", block_end_string="%>", variable_start_string="<<",
                       variable_end_string=">>", comment_start_string="<#", comment_end_string="#>",
                       autoescape=False, finalize=tex_finalize)
    environment = jinja2.Environment(**options)
    environment.filters.update(num=fmt_number, ci=fmt_interval, tex=tex_escape, breakable=tex_breakable, bytes=fmt_bytes,
                               project_path=project_path)
    return environment


def render(results: dict[str, Any], kind: str, *, document: str = "report",
           figures: list[dict[str, Any]] | None = None) -> str:
    template = _environment(kind).get_template(f"{document}.{kind}.j2")
    return template.render(**build_context(results, figures))


def render_reports(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    """Figures, report.md, report.tex, the appendix, paper_macros.tex, and report.pdf where LuaLaTeX exists."""
    figures = [figure.to_dict() for figure in write_figures(run_dir, results)]
    written = [run_dir / figure["png"] for figure in figures if figure["png"]]
    for document, kinds in DOCUMENTS.items():
        for kind in kinds:
            path = run_dir / f"{document}.{kind}"
            path.write_text(render(results, kind, document=document, figures=figures), encoding="utf-8")
            written.append(path)
    macros = run_dir / MACROS_FILE
    macros.write_text(render_macros(results), encoding="utf-8")
    written.append(macros)
    pdf = compile_pdf(run_dir / "report.tex")
    if pdf:
        written.append(pdf)
    return written
