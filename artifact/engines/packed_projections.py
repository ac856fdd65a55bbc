"""Projections that read the same input run as one matrix product in the static decode path: query, key and value
as one, gate and up as one (vLLM packs them the same way).

Why: at batch 1 the weight products are ~85% of a decode step, and cuBLAS runs the small ones worst. On an H100,
a 4096x4096 product (q, k, v or o of a 7B Llama-2 layer) moved ~68% of copy bandwidth while q, k and v packed into
one 4096x12288 product moved ~91% (36.7 us against 48.6 us for the three, under each cuBLAS setting timed); gate/up
packed gained at batch 32 but not at batch 1. The weight products of a whole step took 5.19 ms packed against
5.55 ms separate (`scripts/bench_gemv.py`, one run per setting; docs/performance.md).
Timed as a whole decode step on an H100 (`make bench`, `--packed`): batch 1 went from 72.2% to 77.7% of the
memory-bandwidth roofline (fixed text 72.3% to 77.7%, 30 prompts 72.7% to 75.2%), greedy tokens equal to eager
`generate()`. `[engine.transformers] pack_projections` (default true) turns it off.

How: `pack(model)` concatenates each group's weights (and biases) into one tensor once, and makes each module's
weight a view of its rows: the same values, no second copy, so the model's own forward (and eager `generate()`,
the tests' reference) still runs its separate modules, unchanged. Inside `packed(model)` each group's modules are
replaced by members that share one product: the first member called computes `F.linear(x, packed_weight)`, every
member returns its own columns, the last one called drops the product. The modelling code still calls `q_proj`,
`k_proj`, `v_proj` (and `gate_proj`, `up_proj`) once each with the same input, as the models packed here do; a
member called with another input raises rather than return another input's product.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Sibling Linear modules (of one attention or MLP module) that read the same input, in the order they are called.
GROUPS: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
_ATTRIBUTE = "_r2_packed_groups"


@dataclass(eq=False)
class PackedGroup:
    """One packed product: the modules it replaces, their packed weight and bias, and the product in flight."""

    parent: nn.Module
    names: tuple[str, ...]
    originals: tuple[nn.Linear, ...]
    weight: torch.Tensor
    bias: torch.Tensor | None
    bounds: tuple[tuple[int, int], ...]
    product: torch.Tensor | None = None
    source: torch.Tensor | None = None
    served: int = 0


class PackedMember(nn.Module):
    """Stands in for one Linear of a group while the decoder runs: its columns of the group's one product."""

    def __init__(self, group: PackedGroup, index: int) -> None:
        super().__init__()
        self.group = group
        self.index = index

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        group = self.group
        if group.product is None:
            group.product, group.source, group.served = F.linear(hidden, group.weight, group.bias), hidden, 0
        elif group.source is not hidden:
            raise RuntimeError(f"packed projections {group.names} were not called once each with one input (a module "
                               "called twice, or with another input); set [engine.transformers] pack_projections = "
                               "false for this model")
        start, end = group.bounds[self.index]
        out = group.product[..., start:end]
        group.served += 1
        if group.served == len(group.names):
            group.product, group.source = None, None
        return out


def _packable(parent: nn.Module, names: tuple[str, ...]) -> bool:
    modules = [getattr(parent, name, None) for name in names]
    if not all(type(module) is nn.Linear for module in modules):
        return False
    first = modules[0].weight
    return all(module.in_features == modules[0].in_features and module.weight.dtype == first.dtype
               and module.weight.device == first.device and (module.bias is None) == (modules[0].bias is None)
               for module in modules)


def packable(model: nn.Module) -> list[tuple[str, ...]]:
    """The groups `pack` finds in this model, one entry per group (nothing is changed)."""
    return [names for parent in model.modules() for names in GROUPS if _packable(parent, names)]


def pack(model: nn.Module) -> list[PackedGroup]:
    """Pack every group found (idempotent: a model is packed once). Returns the groups; [] if none fits."""
    existing = getattr(model, _ATTRIBUTE, None)
    if existing is not None:
        return existing[0]
    groups: list[PackedGroup] = []
    with torch.no_grad():
        for parent in model.modules():
            for names in GROUPS:
                if not _packable(parent, names):
                    continue
                originals = tuple(getattr(parent, name) for name in names)
                if all(module.weight.stride(0) == 1 for module in originals):  # stored in-major (weight_layout.py)
                    weight = torch.cat([module.weight.t() for module in originals], dim=1).t()  # and kept so
                else:
                    weight = torch.cat([module.weight for module in originals])
                bias = None if originals[0].bias is None else torch.cat([module.bias for module in originals])
                bounds, start = [], 0
                for module in originals:
                    rows = module.out_features
                    module.weight.data = weight[start:start + rows]  # a view: the separate copy is freed
                    if bias is not None:
                        module.bias.data = bias[start:start + rows]
                    bounds.append((start, start + rows))
                    start += rows
                groups.append(PackedGroup(parent=parent, names=names, originals=originals, weight=weight, bias=bias,
                                          bounds=tuple(bounds)))
    # Members point to their group, groups never to their members: no reference cycle, so dropping the model frees
    # the packed weights at once (a cycle would hold gigabytes of GPU memory until the garbage collector ran).
    members = [tuple(PackedMember(group, index) for index in range(len(group.names))) for group in groups]
    object.__setattr__(model, _ATTRIBUTE, (groups, members))  # not a submodule or buffer: state_dict() is unchanged
    return groups


def packed_groups(model: nn.Module) -> list[PackedGroup]:
    """The groups `pack` made in this model ([] if it was not packed)."""
    return getattr(model, _ATTRIBUTE, ([], []))[0]


@contextmanager
def packed(model: nn.Module) -> Iterator[None]:
    """Inside this block each packed group's modules are its members (one product per group); whatever was there
    before is put back after (so blocks nest). A model that was not packed runs unchanged."""
    groups, members = getattr(model, _ATTRIBUTE, ([], []))
    previous = [[group.parent._modules[name] for name in group.names] for group in groups]
    for group, group_members in zip(groups, members):
        group.product, group.source, group.served = None, None, 0
        for name, member in zip(group.names, group_members):
            group.parent._modules[name] = member
    try:
        yield
    finally:
        for group, modules in zip(groups, previous):
            group.product, group.source, group.served = None, None, 0
            for name, module in zip(group.names, modules):
                group.parent._modules[name] = module
