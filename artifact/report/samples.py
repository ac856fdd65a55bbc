"""A few generated texts for the report: the prompt and the first characters of each model's output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from artifact.report.formatting import one_line

SAMPLE_PROMPTS = 3
SAMPLE_CHARS = 80


def sample_outputs(records: Sequence[Mapping[str, Any]], weights: Mapping[str, str],
                   prompt_texts: Mapping[str, str], *, prompts: int = SAMPLE_PROMPTS,
                   chars: int = SAMPLE_CHARS) -> dict[str, Any]:
    """The first measured, successful generation of each model for the first `prompts` prompt ids (in record
    order). Only where every model has real weights: synthetic weights emit meaningless text."""
    synthetic = sorted(name for name, kind in weights.items() if kind != "real")
    if synthetic:
        return {"shown": False, "reason": f"weights are not real for {', '.join(synthetic)}: their text is meaningless",
                "rows": []}
    chosen: dict[str, dict[str, str]] = {}
    for record in records:
        if record.get("phase") != "measure" or record.get("error") or record.get("variant", "default") != "default":
            continue
        prompt_id = record["prompt_id"]
        if prompt_id not in chosen and len(chosen) >= prompts:
            continue
        outputs = chosen.setdefault(prompt_id, {})
        outputs.setdefault(record["model"], one_line(str(record.get("output_text", "")), chars))
    rows = [{"prompt_id": prompt_id, "prompt": one_line(prompt_texts.get(prompt_id, ""), chars) or None,
             "outputs": outputs} for prompt_id, outputs in chosen.items()]
    return {"shown": bool(rows), "reason": None if rows else "no measured generation to show", "rows": rows}
