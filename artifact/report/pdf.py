"""report.pdf from report.tex with LuaLaTeX (Japanese text through luatexja), when TeX is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TEX_ENGINE = "lualatex"
PDF_LOG = "report.pdf.log"
TEX_PACKAGES = "texlive-luatex texlive-lang-japanese texlive-latex-recommended"
INSTALL_HINT = (f"install LuaLaTeX with Japanese support (Debian/Ubuntu: apt-get install --no-install-recommends "
                f"{TEX_PACKAGES}), then run `artifact report RUN_DIR`, or run `lualatex report.tex` in the run directory")
# The first run with luatexja builds the font cache (a minute or more); later runs take seconds.
COMPILE_TIMEOUT_S = 600


def tex_engine() -> str | None:
    # pdfLaTeX is not an option: it stops at the first Japanese character.
    return shutil.which(TEX_ENGINE)


def compile_pdf(tex: Path) -> Path | None:
    """Compile when LuaLaTeX is installed (the Markdown report is complete without it). A failed compile leaves
    the end of TeX's log in report.pdf.log; a stale report.pdf is removed so it never passes for this one."""
    pdf = tex.with_suffix(".pdf")
    log = tex.parent / PDF_LOG
    engine = tex_engine()
    if engine is None:
        return None
    pdf.unlink(missing_ok=True)
    try:
        completed = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tex.parent,
                                   capture_output=True, text=True, errors="replace", timeout=COMPILE_TIMEOUT_S,
                                   check=False)
        output, failed = completed.stdout, completed.returncode != 0
    except subprocess.TimeoutExpired as error:
        output, failed = f"{TEX_ENGINE} ran past {COMPILE_TIMEOUT_S} s\n{error.stdout or ''}", True
    for suffix in (".aux", ".out", ".log"):
        tex.with_suffix(suffix).unlink(missing_ok=True)
    if failed or not pdf.is_file():
        log.write_text(str(output)[-20000:], encoding="utf-8")
        pdf.unlink(missing_ok=True)
        return None
    log.unlink(missing_ok=True)
    return pdf


def pdf_status(run_dir: Path) -> str | None:
    """Why a run directory has no report.pdf, for the command line; None when it has one."""
    if (run_dir / "report.pdf").is_file():
        return None
    if tex_engine() is None:
        return f"no PDF: {TEX_ENGINE} is not installed; report.tex is written. To get report.pdf, {INSTALL_HINT}."
    return (f"no PDF: {TEX_ENGINE} failed on report.tex; the end of its log is in {run_dir / PDF_LOG}. "
            f"Check that Japanese support is installed ({TEX_PACKAGES}).")
