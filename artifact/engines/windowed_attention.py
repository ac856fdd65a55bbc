"""Decode attention that reads only the written part of a static cache.

Why: scaled_dot_product_attention over a transformers `StaticCache` reads every slot of the cache at every step,
written or not (the mask hides the rest, it does not skip it). On an H100 that was 40% of the gap to the roofline
in throughput mode (32 rows x 320 slots) and 15% at batch 1 (512 slots): docs/performance.md, issue 14.

How: while a `StaticDecoder` runs, the model's attention implementation is `r2_windowed_sdpa`. Where the decoder
passes its explicit 4-D mask (prefill and decode steps) attention goes through one custom op,
`r2::windowed_sdpa`, which slices keys, values and mask to the active window (the written slots rounded up to
`WINDOW_BUCKET`) before SDPA. The decoder passes that mask additive (0 / -inf in the model's dtype), built once per
step: SDPA turns a boolean mask into an additive one itself, and inside the opaque op it did so in every layer (an
elementwise and two fill kernels per layer, ~0.15 ms per step at batch 1 on an H100; docs/performance.md).
The window is a Python int read when the op runs, not when it is traced:
torch.compile treats the op as opaque, so one compile serves every window, and the decoder captures one CUDA
graph per window, each with its own slice.
Anything else (no mask, a mask of another dtype, dropout) goes to transformers' own SDPA function unchanged.
Slots past the window are masked in every step that uses it, so the result is the one full-cache attention
would give (tests/test_windowed_attention.py); a window too short for the written slots would not be, which is
why the decoder, not this module, picks it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

IMPLEMENTATION = "r2_windowed_sdpa"
WINDOW_BUCKET = 64

_active_window: list[int | None] = [None]  # a one-element box: read by the op at run time, never traced


@contextmanager
def attention_window(length: int | None) -> Iterator[None]:
    """Decode attention inside this block reads at most the first `length` cache slots (None: all of them)."""
    previous = _active_window[0]
    _active_window[0] = length
    try:
        yield
    finally:
        _active_window[0] = previous


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True: may attend) as SDPA's additive form in `dtype`: 0 where allowed, -inf elsewhere. -inf
    is what SDPA itself puts there for a boolean mask, so attention gives the same numbers either way."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf"))


def window_for(slots_in_use: int, cache_len: int, bucket: int = WINDOW_BUCKET) -> int:
    """The shortest window that covers `slots_in_use` slots: a multiple of `bucket`, at most the cache length.
    `bucket` <= 0 turns windowing off (the whole cache)."""
    if bucket <= 0:
        return cache_len
    return min(cache_len, -(-slots_in_use // bucket) * bucket)


def windows(cache_len: int, bucket: int = WINDOW_BUCKET) -> list[int]:
    """Every window a step of a `cache_len`-slot cache can use (one CUDA graph each)."""
    if bucket <= 0:
        return [cache_len]
    return [*range(bucket, cache_len, bucket), cache_len]


@torch.library.custom_op("r2::windowed_sdpa", mutates_args=())
def windowed_sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float,
                  groups: int) -> torch.Tensor:
    """SDPA of (B, H, q, D) queries over the first `_active_window` slots of (B, KV, L, D) keys/values, returned as
    a contiguous (B, q, H, D) tensor: transformers' layout, and one fixed layout whatever SDPA backend ran (inductor
    checks an opaque op's output strides against the shape function below)."""
    length = _active_window[0]
    if length is not None and length < key.shape[2]:
        key, value, mask = key[:, :, :length], value[:, :, :length], mask[..., :length]
    if groups > 1:  # grouped-query attention: repeat the (sliced) key/value heads, as transformers' SDPA path does
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    return output.transpose(1, 2).contiguous()


@windowed_sdpa.register_fake
def _windowed_sdpa_shape(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float,
                         groups: int) -> torch.Tensor:
    batch, heads, queries, _ = query.shape
    return query.new_empty((batch, queries, heads, value.shape[-1]))


def windowed_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                               **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: (B, q, H, D) output and no weights."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    explicit_mask = (attention_mask is not None and attention_mask.dtype in (torch.bool, query.dtype)
                     and dropout == 0.0 and kwargs.get("position_bias") is None)
    if not explicit_mask:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    groups = int(getattr(module, "num_key_value_groups", 1))
    return torch.ops.r2.windowed_sdpa(query, key, value, attention_mask, scale, groups), None


@functools.cache  # once per process, not at every decoder call (those are timed)
def register() -> None:
    """Make `IMPLEMENTATION` a known attention implementation (and its masks those of SDPA)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, windowed_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def can_window(model: torch.nn.Module) -> bool:
    """Only a model that attends with SDPA is switched (the op is SDPA on a slice); a model loaded with another
    implementation (eager attention for soft-capping, say) keeps its own, over the whole cache."""
    return getattr(model.config, "_attn_implementation", None) == "sdpa"


@contextmanager
def windowed_attention(model: torch.nn.Module) -> Iterator[None]:
    """The model attends through `r2_windowed_sdpa` inside this block; its own implementation is restored after,
    so eager generate() of the same model (the reference the tests compare with) is untouched."""
    register()
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = previous
