"""Numbers and text as the reports print them: significant digits, intervals, TeX escaping."""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup

_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
# Arrows as math symbols: Latin Modern has no U+2192 glyph, and "->" typeset as text reads as a ligature-free dash
# followed by a greater-than sign at best.
_TEX_ARROWS = (("->", r"$\rightarrow$"), ("\u2192", r"$\rightarrow$"), ("<-", r"$\leftarrow$"))
# C0 controls (a model's output may hold \r, \x1b, ...) would stop TeX or print nothing useful.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# LuaTeX stops at U+FFFD ("invalid utf-8 sequence"); a model's output holds it where it emitted half a character.
_REPLACEMENT_CHARACTER = "\ufffd"
_LONG_WORD = re.compile(r"\S{24}")


def fmt_number(value: float | str | None, digits: int = 4) -> str:
    """Significant digits: ratios, rates and seconds all stay readable at one setting."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else str(value)


def fmt_bytes(value: float | int | None) -> str:
    """Binary units with three significant digits: 475467776 -> "453 MiB"."""
    if value is None:
        return "n/a"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(amount) < 1024:
            return f"{amount:.3g} {unit}"
        amount /= 1024
    return f"{amount:.3g} TiB"


def fmt_interval(interval: dict[str, Any] | None, digits: int = 4) -> str:
    if not interval:
        return "n/a"
    return f"{fmt_number(interval['estimate'], digits)} [{fmt_number(interval['low'], digits)}, {fmt_number(interval['high'], digits)}]"


def tex_escape(text: Any) -> str:
    escaped = re.sub(r"[&%$#_{}~^\\]", lambda match: _TEX_ESCAPES[match.group()], str(text))
    escaped = _CONTROL.sub(" ", escaped).replace(_REPLACEMENT_CHARACTER, "?")
    for raw, replacement in _TEX_ARROWS:
        escaped = escaped.replace(raw, replacement)
    return escaped


def tex_breakable(text: Any) -> str:
    """TeX-escaped text that may break inside long runs without spaces (a model's output in a narrow column)."""
    pieces = _LONG_WORD.sub(lambda match: match.group() + "\0", str(text)).split("\0")
    return Markup(r"\allowbreak{}".join(tex_escape(piece) for piece in pieces))


def tex_finalize(value: Any) -> str:
    """Every value a LaTeX template prints is escaped, except TeX a filter already made (marked as Markup)."""
    return value if isinstance(value, Markup) else tex_escape(value)


def one_line(text: str, limit: int) -> str:
    """The first `limit` characters of a text on one line (control characters and line breaks as spaces)."""
    flat = re.sub(r"\s+", " ", _CONTROL.sub(" ", text)).strip()
    return flat if len(flat) <= limit else flat[:limit] + "..."
