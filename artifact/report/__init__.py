"""Reports: figures, Markdown, LaTeX/PDF, the artifact appendix and paper macros, all from results.json.

context.py builds the one context every template reads; figures.py draws; render.py writes the files;
pdf.py compiles; macros.py writes paper_macros.tex; samples.py picks generated texts to show.
"""

from artifact.report.context import build_context, outcome_display, verdict_rows
from artifact.report.formatting import fmt_interval, fmt_number, tex_escape
from artifact.report.pdf import compile_pdf, pdf_status
from artifact.report.render import render, render_reports

__all__ = ["build_context", "compile_pdf", "fmt_interval", "fmt_number", "outcome_display", "pdf_status", "render",
           "render_reports", "tex_escape", "verdict_rows"]
