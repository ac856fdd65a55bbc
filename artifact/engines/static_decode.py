"""The fast decode path of the transformers engine: the same modelling code and StaticCache, the decode step
replayed from a CUDA graph.

Why: eager `generate()` at batch 1 spends ~90% of its time launching ~1,000 small kernels per token from Python
(r2-claim.md: 33 tokens/s against a ~315 tokens/s bandwidth roofline). The maths is fine; the launches are not.

How (one "slot" per batch size and cache-length bucket):
- a transformers `StaticCache` of fixed shape (batch, prompt width + new tokens rounded up to 64; at batch 1 at
  least 512, so that every prompt of a run shares one compile);
- static device buffers for the step's inputs (token ids, per-row positions), the key mask base and the logits;
- one decode step = `model(...)` on those buffers with an explicit 4-D boolean mask built inside the step from
  the cache's own on-device write counter (`cumulative_length`), then EOS masked out (forced length: min = max),
  then argmax written back into the input buffer, then positions += 1. Every input of the next step is thus
  produced on the device by the previous one, so the step has no host synchronisation and is captured once into
  a `torch.cuda.CUDAGraph` (a manual graph, not torch.compile's "reduce-overhead": that one hands back outputs
  that its next replay overwrites, the failure r2-claim.md records; here the graph writes into our own buffers);
- prefill runs eagerly (variable prompt widths, one call per request), and its end is the first-token time.
Sampling (temperature > 0) replays the same graph for the logits and draws with a seeded device generator
between replays.
Fixed text (`generate_fixed`): the same step, with one change at its end: the next input is not the argmax but
the reference token, read inside the step from a device buffer of the reference ids at a device step counter
(`cursor`, += 1 per step). The argmax is still computed (into its own buffer), so a forced step does the work
of a generated one plus a two-element gather; the step still has no host synchronisation and is captured in
its own graph. The prefill's argmax is replaced by the first reference token the same way, so n reference
tokens take one prefill and n - 1 decode steps, exactly as n generated tokens do. Optional `inductor=True` compiles the step with torch.compile (no cudagraphs) before capture:
fused norms/rotary kernels, at tens of seconds of compile per shape.
Attention windows (`windowed_attention.py`): a step's attention reads only the cache slots written so far, rounded
up to 64, not the whole cache. The host knows which slot each step writes (prompt width + step index; every row of
a left-padded batch writes the same slot), so it picks the window without asking the device; each window has its
own captured graph of the same compiled step (one compile, a few milliseconds of capture per window).
Packed projections (`packed_projections.py`, `pack_projections = true`, the default; compiled path only):
inside the decoder's calls q/k/v and gate/up run as one matrix product each (their weights packed once into one
tensor, the modules' own weights views of it); the model's own forward, outside the decoder, is unchanged.
Weight layout (`weight_layout.py`; the engine's default `weight_layout = "in-major"`; this class, asked for none,
keeps the weights as the model stores them): the projection weights stored (inputs, outputs), which changes the
cuBLAS kernel that runs each product.

On a CPU (tests, CI) the same step function runs without capture: identical code path, eager kernels.
Left padding: each row has its own positions (count of its real tokens) and its padded key slots stay masked;
padded query rows in prefill see their own causal prefix so no softmax row is empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from artifact.engines.packed_projections import pack, packed
from artifact.engines.weight_layout import LAYOUTS, layout_counts, layout_of, relayout
from artifact.engines.windowed_attention import (WINDOW_BUCKET, additive_mask, attention_window, can_window,
                                                 window_for, windowed_attention, windows)

LENGTH_BUCKET = 64
MIN_CACHE_LEN = 512  # batch 1: one cache length for every prompt of a run, so one compile per model shape
BATCH_BUCKET = 32  # batches of 2..32 rows run as 32 (padding rows discarded), as vLLM pads to captured sizes


def bucket_length(tokens: int, batch: int = 1) -> int:
    """Cache length of a slot (its compiled shape). At batch 1 the floor of 512 lets every prompt of a run share one
    compile; a step's attention reads only the window of slots written so far (windowed_attention.py), so the floor
    costs memory, not time. A batch runs one width per run, so it gets a tight length: before the windows every slot
    was read at every step, and on an H100 the tight length took throughput mode from 61.7% to 68.8% of the roofline
    (docs/performance.md); it still saves memory (32 rows x 512 slots of a 7B model are 8.6 GB)."""
    tight = -(-tokens // LENGTH_BUCKET) * LENGTH_BUCKET
    return max(MIN_CACHE_LEN, tight) if batch == 1 else tight


def bucket_batch(rows: int) -> int:
    return 1 if rows == 1 else -(-rows // BATCH_BUCKET) * BATCH_BUCKET


@dataclass
class _Slot:
    batch: int
    length: int
    greedy: bool
    cache: Any
    ids: torch.Tensor  # (B, 1) the token fed to the next step; the step writes its argmax here
    positions: torch.Tensor  # (B, 1) rotary position of that token, per row
    key_base: torch.Tensor  # (B, L) True where a key slot may be attended once written (real prompt or generated)
    key_index: torch.Tensor  # (L,)
    logits: torch.Tensor  # (B, V) the last step's logits (for sampling)
    forced: bool = False  # fixed text: the next input comes from `reference` at `cursor`
    reference: torch.Tensor | None = None  # (B, L) reference token ids of a fixed-text slot
    cursor: torch.Tensor | None = None  # (1,) index into `reference` of the next step's input
    choice: torch.Tensor | None = None  # (B, 1) the argmax a forced step computes (the work of generation)
    graphs: dict[int, Any] = field(default_factory=dict)  # attention window -> the step captured with it
    capture_s: float = 0.0
    steps: Callable[[], None] | None = field(default=None, repr=False)


class StaticDecoder:
    """Forced-length decoding with a static cache and a captured decode step. One instance per loaded model."""

    def __init__(self, model: torch.nn.Module, *, eos_token_ids: list[int], cuda_graph: bool | None = None,
                 inductor: bool = False, tuning: str = "default", window_bucket: int = WINDOW_BUCKET,
                 pack_projections: bool = False, weight_layout: str | None = None) -> None:
        # pack_projections defaults to False here (the config's default is True): a decoder built without asking
        # keeps the model's own separate products, as the eager fixed-text decoder of compile = false must.
        # weight_layout None keeps the weights as the model stores them now (as loaded, or as an earlier decoder of
        # this model relaid them); a layout named is applied, and "out-major" on a relaid model is refused
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        self.inductor = inductor
        self.tuning = tuning
        # 0: the model's own attention over the whole cache, exactly the path before issue 14's windows
        self.window_bucket = window_bucket if can_window(model) else 0
        if weight_layout is not None and weight_layout not in LAYOUTS:
            raise ValueError(f"weight_layout must be one of {', '.join(LAYOUTS)}, got {weight_layout!r}")
        if weight_layout == "out-major" and layout_of(model) == "in-major":
            raise ValueError("weight_layout 'out-major' asked for a model whose projection weights are already stored "
                             "in-major (an earlier decoder relaid them); load the model again for out-major")
        # q/k/v and gate/up as one product each (packed_projections.py); [] keeps the model's separate products.
        # Packing and relayout replace the weights' storage: a decoder built earlier on this model must not be replayed.
        self.packed_groups = pack(model) if pack_projections else []
        if weight_layout == "in-major":  # after packing: the packed tensors are what gets stored in-major
            relayout(model)
        self.weight_layout_counts = layout_counts(model)  # (stored in-major, projection weights)
        self.eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long, device=self.device)
        self.slots: dict[tuple[int, int, bool, bool], _Slot] = {}
        self.pool = torch.cuda.graph_pool_handle() if self.cuda_graph else None
        self.events: list[dict[str, Any]] = []  # capture/compile costs, for the cost log
        self._forward = self._compiled_forward() if inductor else self._eager_forward

    @property
    def weight_layout(self) -> str:
        """"in-major" once relayout has stored the projection weights so (see weight_layout_counts for any left)."""
        return "in-major" if self.weight_layout_counts[0] else "out-major"

    # -- the step -------------------------------------------------------------------------------------------
    def _eager_forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any) -> torch.Tensor:
        if self.window_bucket:  # additive once per step, not once per layer inside the windowed op
            mask = additive_mask(mask, self.dtype)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    def _compiled_forward(self) -> Callable[..., torch.Tensor]:
        import torch._dynamo

        from artifact.engines.compile_cache import inductor_options

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        options = inductor_options(self.tuning)
        return torch.compile(self._eager_forward, dynamic=False, fullgraph=False, options=options or None)

    def _step(self, slot: _Slot) -> None:
        written = slot.cache.layers[0].cumulative_length  # on-device count of filled cache slots = this token's slot
        mask = (slot.key_base & (slot.key_index <= written)).view(slot.batch, 1, 1, slot.length)
        logits = self._forward(slot.ids, slot.positions, mask, slot.cache)
        logits = logits.index_fill(-1, self.eos, float("-inf"))  # forced length: EOS is never chosen (min = max)
        slot.logits.copy_(logits)
        if slot.forced:
            slot.choice.copy_(logits.argmax(dim=-1, keepdim=True))
            slot.ids.copy_(slot.reference.index_select(1, slot.cursor))
            slot.cursor.add_(1)
        elif slot.greedy:
            slot.ids.copy_(logits.argmax(dim=-1, keepdim=True))
        slot.positions.add_(1)

    # -- slots ----------------------------------------------------------------------------------------------
    def _new_slot(self, batch: int, length: int, greedy: bool, forced: bool = False) -> _Slot:
        from transformers import StaticCache

        config = self.model.config
        with torch.device(self.device):
            cache = StaticCache(config=config, max_cache_len=length)
            slot = _Slot(
                batch=batch, length=length, greedy=greedy, cache=cache,
                ids=torch.zeros(batch, 1, dtype=torch.long),
                positions=torch.zeros(batch, 1, dtype=torch.long),
                key_base=torch.ones(batch, length, dtype=torch.bool),
                key_index=torch.arange(length),
                logits=torch.zeros(batch, int(config.vocab_size), dtype=self.dtype),
                forced=forced,
            )
            if forced:
                slot.reference = torch.zeros(batch, length, dtype=torch.long)
                slot.cursor = torch.zeros(1, dtype=torch.long)
                slot.choice = torch.zeros(batch, 1, dtype=torch.long)
        return slot

    def _reset(self, slot: _Slot) -> None:
        """Rewind the cache in place (same tensors: the graph holds their addresses). Stale keys stay masked."""
        for layer in slot.cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.cumulative_length.zero_()

    def prepare(self, batch: int, total_tokens: int, greedy: bool = True, forced: bool = False) -> _Slot:
        """Allocate the slot for (batch, bucket(total_tokens)) and capture its step; idempotent. Not timed work.
        `forced`: the fixed-text step (greedy work, next input from the reference buffer)."""
        key = (batch, bucket_length(total_tokens, batch), greedy or forced, forced)
        slot = self.slots.get(key)
        if slot is not None:
            return slot
        started = time.perf_counter()
        slot = self._new_slot(batch, key[1], key[2], forced)
        with torch.inference_mode(), self.scope():
            # A one-token prefill initialises the cache tensors (transformers allocates them on first update).
            self._prefill(slot, torch.ones(batch, 1, dtype=torch.long, device=self.device),
                          torch.ones(batch, 1, dtype=torch.long, device=self.device))
            if self.cuda_graph:
                stream = torch.cuda.Stream(self.device)
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    for _ in range(3 if self.inductor else 2):  # compile (if any), cuBLAS handles, allocator warm-up
                        self._step(slot)
                    for length in windows(slot.length, self.window_bucket):  # attention kernels' set-up per shape
                        self._reset(slot)
                        with attention_window(length):
                            self._step(slot)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                for length in windows(slot.length, self.window_bucket):
                    graph = torch.cuda.CUDAGraph()
                    with attention_window(length), torch.cuda.graph(graph, pool=self.pool):
                        self._step(slot)
                    slot.graphs[length] = graph
            elif self.inductor:
                self._step(slot)
            self._reset(slot)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        slot.capture_s = time.perf_counter() - started
        self.events.append({"batch": batch, "cache_len": key[1], "greedy": key[2], "forced": forced,
                            "seconds": round(slot.capture_s, 3),
                            "attention_windows": len(windows(slot.length, self.window_bucket)),
                            "cuda_graph": self.cuda_graph, "inductor": self.inductor,
                            "tuning": self.tuning if self.inductor else None})
        self.slots[key] = slot
        return slot

    def release(self) -> None:
        self.slots.clear()

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Where the decoder's own calls run: the windowed attention implementation (or the model's own when
        windows are off) and the packed projections (if packed)."""
        with (windowed_attention(self.model) if self.window_bucket else nullcontext(),
              packed(self.model) if self.packed_groups else nullcontext()):
            yield

    def advance(self, slot: _Slot, slots_in_use: int) -> None:
        """One decode step whose token goes to cache slot `slots_in_use - 1`: the captured graph of the shortest
        window that covers it, or the same step run directly where nothing is captured (CPU)."""
        length = window_for(slots_in_use, slot.length, self.window_bucket)
        graph = slot.graphs.get(length)
        if graph is not None:
            graph.replay()
        else:
            with attention_window(length):
                self._step(slot)

    # -- generation -----------------------------------------------------------------------------------------
    def _prefill(self, slot: _Slot, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, width = input_ids.shape
        self._reset(slot)
        real = attention_mask.bool()
        slot.key_base[:, :width].copy_(real)
        slot.key_base[:, width:].fill_(True)
        query_index = torch.arange(width, device=self.device)
        causal = slot.key_index[None, :] <= query_index[:, None]  # (P, L)
        allowed = causal[None] & (slot.key_base[:, None, :] | ~real[:, :, None])  # padded queries: own prefix
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        with attention_window(window_for(width, slot.length, self.window_bucket)):
            logits = self._eager_forward(input_ids, positions, allowed[:, None], slot.cache)
        slot.positions.copy_(attention_mask.long().sum(dim=1, keepdim=True))
        return logits.index_fill(-1, self.eos, float("-inf"))

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, *,
                 temperature: float = 0.0, seed: int = 0,
                 on_first_token: Callable[[], None] | None = None) -> torch.Tensor:
        """Exactly `max_new_tokens` new tokens per row, (B, max_new_tokens) on the device."""
        rows, width = input_ids.shape
        batch = bucket_batch(rows) if self.cuda_graph else rows
        if batch > rows:  # padding rows: one real token each, outputs dropped
            filler = torch.zeros(batch - rows, width, dtype=input_ids.dtype, device=self.device)
            filler[:, -1] = 1
            input_ids = torch.cat([input_ids, filler])
            attention_mask = torch.cat([attention_mask, (filler > 0).to(attention_mask.dtype)])
        greedy = temperature <= 0
        slot = self.prepare(batch, width + max_new_tokens, greedy)
        generator = None
        if not greedy:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
        out = torch.empty(batch, max_new_tokens, dtype=torch.long, device=self.device)
        with torch.inference_mode(), self.scope():
            logits = self._prefill(slot, input_ids, attention_mask)
            slot.ids.copy_(self._choose(logits, temperature, generator))
            out[:, :1].copy_(slot.ids)
            if on_first_token is not None:
                on_first_token()
            for index in range(1, max_new_tokens):
                self.advance(slot, width + index)
                if not greedy:
                    slot.ids.copy_(self._choose(slot.logits, temperature, generator))
                out[:, index : index + 1].copy_(slot.ids)
        return out[:rows]

    @staticmethod
    def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        if temperature <= 0:
            return logits.argmax(dim=-1, keepdim=True)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)

    def generate_fixed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, reference: torch.Tensor, *,
                       on_first_token: Callable[[], None] | None = None) -> torch.Tensor:
        """Emit `reference` (1-D ids on the device) after the prompt, one forced token per step: (1, n) emitted ids.

        Batch 1 (one prompt row). The emitted ids are read back from the step's own input buffer, so a step that
        did not take its input from the reference shows up as a difference, not as a copy of the reference.
        """
        rows, width = input_ids.shape
        if rows != 1:
            raise ValueError(f"fixed text runs at batch 1, got {rows} prompt rows")
        count = int(reference.numel())
        if count < 1:
            raise ValueError("fixed text needs at least one reference token")
        slot = self.prepare(1, width + count, greedy=True, forced=True)
        out = torch.empty(1, count, dtype=torch.long, device=self.device)
        with torch.inference_mode(), self.scope():
            slot.reference[0, :count].copy_(reference)
            logits = self._prefill(slot, input_ids, attention_mask)
            slot.choice.copy_(logits.argmax(dim=-1, keepdim=True))  # generation's work at the first token
            slot.ids.copy_(slot.reference[:, :1])
            slot.cursor.fill_(1)
            out[:, :1].copy_(slot.ids)
            if on_first_token is not None:
                on_first_token()
            for index in range(1, count):
                self.advance(slot, width + index)
                out[:, index : index + 1].copy_(slot.ids)
        return out
