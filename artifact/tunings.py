"""The choices of `[engine.transformers] tuning`: inductor settings for the compiled decode step. A module of its
own so that config validation and the engine read one list without importing each other."""

from __future__ import annotations

from typing import Any

# The inductor settings of each `engine.transformers.tuning` choice. Measured on an H200 (docs/performance.md):
# coordinate descent tunes each Triton kernel's launch settings; the GEMM autotuning benchmarks Triton templates
# against cuBLAS for each matrix product (at batch 1 these are GEMVs); max-autotune does both and tunes pointwise
# and reduction kernels too.
TUNINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "coordinate-descent": {"coordinate_descent_tuning": True},
    "max-autotune-gemm": {"max_autotune_gemm": True, "triton.cudagraphs": False},
    "max-autotune": {"coordinate_descent_tuning": True, "max_autotune": True, "max_autotune_gemm": True,
                     "triton.cudagraphs": False},
}
