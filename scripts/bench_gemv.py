"""GPU benchmark of the weight products of one decode step, shape by shape: how close each matrix-vector product
of a 7B Llama-2 layer comes to the copy bandwidth, with the projections separate (as transformers runs them) and
fused (query/key/value as one product, gate/up as one, as vLLM runs them), under a few cuBLAS settings and in two
weight layouts: (outputs, inputs) as nn.Linear stores it, and the same values stored (inputs, outputs), which a
Linear module can hold as a transposed view without any change to the model's code. The layout decides which cuBLAS
kernel runs (at batch 1 the square products take a split-K kernel plus a separate reduction kernel).

Why: at batch 1 the weight products are ~85% of the decode step and run at ~82% of copy bandwidth
(docs/performance.md); this tells whether fusing projections or a cuBLAS setting would move that, before any
engine code changes. Each shape is timed as 32 products over 32 distinct weight matrices (one per layer, so the
50 MB L2 cache holds none of them) captured in one CUDA graph, as the decode step replays them.

    PYTHONPATH=. python3 scripts/bench_gemv.py --rows 1,32 --out $OUT/gemv.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from artifact.architectures import SWALLOW_VOCAB, architecture_dict  # noqa: E402
from artifact.config import WEIGHT_LAYOUTS  # noqa: E402
from artifact.measure.roofline import measure_copy_bandwidth  # noqa: E402

SETTINGS = ("default", "no-reduced-precision-reduction", "cublaslt")
LAYOUTS = WEIGHT_LAYOUTS  # weight stored (outputs, inputs) as nn.Linear does, or (inputs, outputs)


@contextmanager
def blas_setting(name: str) -> Iterator[None]:
    matmul = torch.backends.cuda.matmul
    reduced, library = matmul.allow_bf16_reduced_precision_reduction, torch.backends.cuda.preferred_blas_library()
    if name == "no-reduced-precision-reduction":
        matmul.allow_bf16_reduced_precision_reduction = False
    elif name == "cublaslt":
        torch.backends.cuda.preferred_blas_library("cublaslt")
    elif name != "default":
        raise SystemExit(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    try:
        yield
    finally:
        matmul.allow_bf16_reduced_precision_reduction = reduced
        torch.backends.cuda.preferred_blas_library(library)


def layer_shapes(hidden: int, intermediate: int, heads: int, kv_heads: int) -> dict[str, tuple[int, int]]:
    """(inputs, outputs) of each product of one decoder layer, separate and fused."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    return {"q": (hidden, hidden), "k": (hidden, kv), "v": (hidden, kv), "o": (hidden, hidden),
            "gate": (hidden, intermediate), "up": (hidden, intermediate), "down": (intermediate, hidden),
            "qkv": (hidden, hidden + 2 * kv), "gate_up": (hidden, 2 * intermediate)}


def time_products(inputs: int, outputs: int, rows: int, layers: int, replays: int,
                  layout: str = "out-major") -> dict[str, Any]:
    """`layers` products (rows x inputs) @ (inputs x outputs) over distinct bf16 weights, one CUDA graph. Each weight
    is an (outputs, inputs) tensor as nn.Linear holds it; `in-major`: a transposed view of (inputs, outputs) storage."""
    if layout not in LAYOUTS:
        raise SystemExit(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    shape = (outputs, inputs) if layout == "out-major" else (inputs, outputs)
    weights = [torch.randn(*shape, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(layers)]
    if layout == "in-major":
        weights = [weight.t() for weight in weights]
    x = torch.randn(rows, inputs, device="cuda", dtype=torch.bfloat16)
    outs = [torch.empty(rows, outputs, device="cuda", dtype=torch.bfloat16) for _ in range(layers)]

    def step() -> None:
        for weight, out in zip(weights, outs):
            torch.mm(x, weight.t(), out=out)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    torch.cuda.synchronize()
    seconds = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        seconds.append(start.elapsed_time(end) / 1e3)
    median = statistics.median(seconds)
    weight_bytes = layers * inputs * outputs * 2
    reference = F.linear(x, weights[0]).float()
    error = float((reference - outs[0].float()).abs().max())
    del weights, outs, graph
    torch.cuda.empty_cache()
    return {"inputs": inputs, "outputs": outputs, "rows": rows, "products": layers, "layout": layout,
            "ms_per_product": round(median / layers * 1e3, 5), "gb_per_s": round(weight_bytes / median / 1e9, 1),
            "max_abs_error_vs_linear": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="llama-2-7b")
    parser.add_argument("--rows", default="1,32", help="comma-separated batch rows")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, of: {', '.join(LAYOUTS)}")
    parser.add_argument("--replays", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for name, chosen, allowed in (("setting", args.settings, SETTINGS), ("layout", args.layouts, LAYOUTS)):
        unknown = [value for value in chosen.split(",") if value not in allowed]
        if unknown:
            raise SystemExit(f"unknown {name} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if not torch.cuda.is_available():
        raise SystemExit("bench_gemv.py times GPU products; no CUDA device is visible")
    arch = architecture_dict(args.architecture)
    layers = int(arch["num_hidden_layers"])
    shapes = layer_shapes(int(arch["hidden_size"]), int(arch["intermediate_size"]), int(arch["num_attention_heads"]),
                          int(arch.get("num_key_value_heads", arch["num_attention_heads"])))
    heads = {"lm_head_32000": (int(arch["hidden_size"]), 32_000),
             f"lm_head_{SWALLOW_VOCAB}": (int(arch["hidden_size"]), SWALLOW_VOCAB)}
    bandwidth = measure_copy_bandwidth("cuda")["gb_per_s"]
    print(f"{torch.cuda.get_device_name(0)}; copy bandwidth {bandwidth:,.0f} GB/s; {layers} layers", flush=True)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                               "copy_gb_per_s": bandwidth, "architecture": args.architecture, "runs": []}
    runs = [(setting, layout, int(rows)) for setting in args.settings.split(",") for layout in args.layouts.split(",")
            for rows in args.rows.split(",")]
    for setting, layout, rows in runs:
        with blas_setting(setting):
            timed = {name: time_products(*shape, rows, layers, args.replays, layout) for name, shape in shapes.items()}
            timed.update({name: time_products(*shape, rows, 1, args.replays * 8, layout) for name, shape in heads.items()})
        per_layer_separate = sum(timed[name]["ms_per_product"] for name in ("q", "k", "v", "o", "gate", "up", "down"))
        per_layer_fused = sum(timed[name]["ms_per_product"] for name in ("qkv", "o", "gate_up", "down"))
        lm = timed["lm_head_32000"]["ms_per_product"]
        run = {"setting": setting, "layout": layout, "rows": rows, "shapes": timed,
               "step_ms_separate": round(layers * per_layer_separate + lm, 4),
               "step_ms_fused": round(layers * per_layer_fused + lm, 4)}
        results["runs"].append(run)
        print(f"\n{setting}, weights {layout}, {rows} row(s): weight products per step "
              f"{run['step_ms_separate']:.3f} ms separate, {run['step_ms_fused']:.3f} ms fused (q/k/v and gate/up as "
              "one product each)")
        for name, row in timed.items():
            print(f"  {name:>14} {row['inputs']:>6}->{row['outputs']:<6} {row['ms_per_product'] * 1e3:8.1f} us "
                  f"{row['gb_per_s']:8.1f} GB/s {100 * row['gb_per_s'] / bandwidth:5.1f}% of copy", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
