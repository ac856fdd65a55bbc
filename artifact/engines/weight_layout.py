"""The storage order of the decoder layers' projection weights: (outputs, inputs) as nn.Linear holds them
("out-major", what loading gives), or the same values stored (inputs, outputs) with each Linear's weight a
transposed view ("in-major").

Why: the layout decides which cuBLAS kernel runs a product. On an H100 at batch 1 (`scripts/bench_gemv.py
--layouts`, call 11 in docs/performance.md, one run) the 4096x4096 products moved 80% of copy bandwidth in-major
against 67-71% out-major (out-major takes a split-K kernel plus a separate reduction kernel), and gate/up packed
94.6% against 84.9%: the weight products of a packed step 4.83 ms against 5.19 ms. The whole packed decode step
(Llama-2-7b shape, batch 1, same H100, same process) went from 175.4 to 186.7 tokens/s (77.3% to 82.3% of the
roofline) with greedy tokens equal to eager `generate()` (docs/performance.md, issue 14 seventh session), so
`[engine.transformers] weight_layout` is "in-major" by default.

How: `relayout(model)` stores every projection weight of the decoder layers (q/k/v/o, gate/up/down) transposed, once
(one matrix at a time, so the extra memory is one matrix), and points each module at a transposed view of it: the
same values and shapes, the model's own forward and state_dict() unchanged in content. Packed groups
(`packed_projections.py`) are stored in-major as one tensor and their modules stay views of it. The LM head keeps
its layout (in-major it was faster for Llama 2's 32,000 rows, 94.1 against 98.7 us, but slower for Swallow's 43,176,
138.0 against 130.2 us, in the same run) and so does every tied weight. The step figures above count the LM head
in-major; out-major it adds 0.005 ms. Relayout replaces the weights' storage: a decoder captured before it (CUDA
graphs hold addresses) must not be replayed after, which is why StaticDecoder does it when it is built.
"""

from __future__ import annotations

import torch
from torch import nn

from artifact.config import WEIGHT_LAYOUTS as LAYOUTS
from artifact.engines.packed_projections import packed_groups

__all__ = ["LAYOUTS", "PROJECTIONS", "in_major", "is_in_major", "layout_counts", "layout_of", "relayout"]

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def in_major(weight: torch.Tensor) -> torch.Tensor:
    """The same (outputs, inputs) values, stored (inputs, outputs): a transposed view of contiguous storage."""
    return weight.detach().t().contiguous().t()


def is_in_major(weight: torch.Tensor) -> bool:
    """Stored (inputs, outputs): consecutive outputs adjacent (a packed member's columns are a slice of wider rows)."""
    return weight.dim() == 2 and weight.stride(0) == 1 and weight.stride(1) >= weight.shape[0]


def relayout(model: nn.Module) -> int:
    """Store the decoder layers' projection weights in-major (idempotent). Returns how many tensors were moved (a
    packed group counts once)."""
    groups = packed_groups(model)
    grouped = {id(module) for group in groups for module in group.originals}
    shared = _shared_storage(model)
    moved = 0
    with torch.no_grad():
        for group in groups:
            if is_in_major(group.weight):
                continue
            group.weight = in_major(group.weight)
            for module, (start, end) in zip(group.originals, group.bounds):
                module.weight.data = group.weight[start:end]
            moved += 1
        for parent in model.modules():
            for name in PROJECTIONS:
                module = parent._modules.get(name)
                if type(module) is not nn.Linear or id(module) in grouped or is_in_major(module.weight):
                    continue
                if module.weight.untyped_storage().data_ptr() in shared:  # tied to another parameter: leave it
                    continue
                module.weight.data = in_major(module.weight)
                moved += 1
    return moved


def layout_counts(model: nn.Module) -> tuple[int, int]:
    """(projection weights stored in-major, projection weights) of the decoder layers."""
    weights = [module.weight for parent in model.modules() for name in PROJECTIONS
               if type(module := parent._modules.get(name)) is nn.Linear]
    return sum(is_in_major(weight) for weight in weights), len(weights)


def layout_of(model: nn.Module) -> str:
    """"in-major" when any projection weight of the decoder layers is stored in-major (relayout moves all it can),
    else "out-major"; `layout_counts` tells whether some were left (tied weights)."""
    return "in-major" if layout_counts(model)[0] else "out-major"


def _shared_storage(model: nn.Module) -> set[int]:
    """Storages that hold more than one parameter outside the packed groups (tied weights)."""
    seen: dict[int, int] = {}
    grouped = {id(module.weight) for group in packed_groups(model) for module in group.originals}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in grouped:
            continue
        pointer = parameter.untyped_storage().data_ptr()
        seen[pointer] = seen.get(pointer, 0) + 1
    return {pointer for pointer, count in seen.items() if count > 1}
