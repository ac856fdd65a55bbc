"""GPU check of fixed-text timing on the transformers engine (static cache, decode step replayed from a CUDA graph).

For one synthetic model of a declared shape (default: Llama-2-7b, bf16, batch 1) and reference texts cut from a
corpus, it checks and prints:
- that every fixed-text call emits exactly the reference ids and decodes to the reference text;
- the host synchronisations inside the decode loop (torch.cuda.set_sync_debug_mode("warn"): every synchronising
  CUDA call warns; the loop of replays should cause none);
- decode tokens/s of fixed text against free generation of the same number of tokens after the same prompt,
  alternating which goes first per document, medians over documents and repeats.
Writes everything as JSON to --out.

    PYTHONPATH=. python3 scripts/bench_fixed_text.py --tokenizer .devcarry/data/tokenizers/llama-2/tokenizer.model \
        --mirror .devcarry/data --out $OUT/fixed_text.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from artifact.config import EngineSettings, ModelSpec, ReferenceTextSettings, TransformersSettings  # noqa: E402
from artifact.corpora import load_corpus  # noqa: E402
from artifact.engines.base import GenerationRequest  # noqa: E402
from artifact.engines.hf import TransformersEngine  # noqa: E402
from artifact.models import resolve_model  # noqa: E402
from artifact.reference_texts import select_reference_texts  # noqa: E402
from artifact.tokenization import text_token_ids  # noqa: E402


def host_syncs(run: Any) -> list[str]:
    """The synchronising CUDA calls `run()` makes (torch's sync debug mode warns once per call): where each was."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return [f"{Path(item.filename).name}:{item.lineno}: {str(item.message)[:100]}" for item in caught
            if "synchroniz" in str(item.message)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--mirror", type=Path, default=None, help="data mirror with JSQuAD (else the shipped tiny_ja)")
    parser.add_argument("--architecture", default="llama-2-7b")
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script (no graph, no sync check)")
    args = parser.parse_args()

    corpus = "jsquad" if args.mirror else "tiny_ja"
    settings = ReferenceTextSettings(corpus=corpus, documents=args.documents)
    units = select_reference_texts(load_corpus(corpus, mirror=args.mirror), settings, seed=20231219)
    cuda = args.device == "cuda"
    engine = TransformersEngine(EngineSettings(dtype="bfloat16" if cuda else "float32", device=args.device,
                                               transformers=TransformersSettings(compile=True)))
    started = time.perf_counter()
    engine.load(resolve_model(ModelSpec(name=args.architecture, role="baseline", repo=f"synthetic/{args.architecture}",
                                        revision="0" * 40, weights="synthetic", architecture=args.architecture,
                                        tokenizer=args.tokenizer)))
    load_s = time.perf_counter() - started

    def fixed(unit: Any) -> Any:
        return engine.generate([GenerationRequest("f", unit.id, unit.text, 1, seed=1, continuation=unit.continuation)])[0]

    def free(unit: Any, tokens: int) -> Any:
        return engine.generate([GenerationRequest("g", unit.id, unit.text, tokens, seed=1)])[0]

    started = time.perf_counter()
    fixed(units[0])
    free(units[0], 256)
    warmup_s = time.perf_counter() - started

    # The decode loops alone (no first-token clock, which synchronises on purpose).
    prompt = engine.tokenizer([units[0].text], return_tensors="pt").to(args.device)
    reference = torch.tensor(text_token_ids(engine.tokenizer, [units[0].continuation])[0], device=args.device)
    syncs = {} if not cuda else {
        "fixed_text": host_syncs(lambda: engine.decoder.generate_fixed(prompt["input_ids"], prompt["attention_mask"],
                                                                       reference)),
        "fixed_text (again)": host_syncs(lambda: engine.decoder.generate_fixed(prompt["input_ids"],
                                                                               prompt["attention_mask"], reference)),
        "free_generation": host_syncs(lambda: engine.decoder.generate(prompt["input_ids"], prompt["attention_mask"],
                                                                      int(reference.numel()))),
    }

    rows = []
    mismatches = 0
    for repeat in range(args.repeats):
        for index, unit in enumerate(units):
            order = ("fixed", "free") if (index + repeat) % 2 == 0 else ("free", "fixed")
            results: dict[str, Any] = {}
            for kind in order:
                if kind == "fixed":
                    results[kind] = fixed(unit)
                else:
                    count = len(text_token_ids(engine.tokenizer, [unit.continuation])[0])
                    results[kind] = free(unit, count)
            out = results["fixed"]
            ok = out.output_token_ids == out.reference_token_ids and engine.decode(out.output_token_ids) == unit.continuation
            mismatches += not ok
            n = len(out.output_token_ids)
            for kind, output in results.items():
                rows.append({"repeat": repeat, "unit": unit.id, "kind": kind, "tokens": n, "chars": len(unit.continuation),
                             "prompt_tokens": output.prompt_tokens, "ttft_s": output.first_token_s,
                             "e2e_s": output.finished_s,
                             "decode_tokens_per_s": (n - 1) / (output.finished_s - output.first_token_s)})

    def median(kind: str, key: str) -> float:
        return statistics.median(row[key] for row in rows if row["kind"] == kind)

    summary = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__, "architecture": args.architecture,
        "corpus": corpus, "documents": len(units), "repeats": args.repeats, "load_s": round(load_s, 1),
        "warmup_s (compile + capture of both steps)": round(warmup_s, 1),
        "mismatching fixed-text calls": mismatches,
        "host syncs in one call (prefill + decode loop)": {kind: len(found) for kind, found in syncs.items()},
        "where": syncs,
        "median tokens per document": median("fixed", "tokens"),
        "median chars per document": median("fixed", "chars"),
        "decode tokens/s fixed text (median)": round(median("fixed", "decode_tokens_per_s"), 1),
        "decode tokens/s free generation (median)": round(median("free", "decode_tokens_per_s"), 1),
        "e2e s fixed (median)": round(median("fixed", "e2e_s"), 4),
        "e2e s free (median)": round(median("free", "e2e_s"), 4),
        "captures": engine.decoder.events,
    }
    summary["fixed / free decode tokens/s"] = round(summary["decode tokens/s fixed text (median)"]
                                                    / summary["decode tokens/s free generation (median)"], 4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, ensure_ascii=False))
    for key, value in summary.items():
        if key != "captures":
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
