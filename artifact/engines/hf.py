"""The transformers engine: `model.generate` with an explicit, identical GenerationConfig for every model."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
from transformers.generation.streamers import BaseStreamer

from artifact.engines.base import (SHAPE_KEYS, Engine, GenerationOutput, GenerationRequest, LoadedModelInfo, ModelHandle,
                                   peak_rss_bytes)
from artifact.errors import EngineError
from artifact.tokenization import load_tokenizer, text_token_ids

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise EngineError("engine.device = \"cuda\" but torch sees no GPU; use device = \"auto\" or \"cpu\"")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[requested]


class _FirstTokenClock(BaseStreamer):
    """Notes when generate() hands out its first new token (the first put() is the prompt itself)."""

    def __init__(self, synchronize: Any) -> None:
        self._synchronize = synchronize
        self._puts = 0
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self._puts += 1
        if self._puts == 2:
            self._synchronize()
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


def describe_model(model: torch.nn.Module, name: str, local_path: str, device: torch.device) -> LoadedModelInfo:
    config = model.config
    parameters = sum(parameter.numel() for parameter in model.parameters())
    weight_bytes = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    shape = {key: int(getattr(config, key)) for key in SHAPE_KEYS if isinstance(getattr(config, key, None), int)}
    return LoadedModelInfo(
        name=name,
        local_path=local_path,
        architecture=(config.architectures or [type(model).__name__])[0],
        vocab_size=int(config.vocab_size),
        parameter_count=int(parameters),
        weight_bytes=int(weight_bytes),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        device=str(device),
        shape=shape,
    )


def _inductor_requested() -> bool:
    """On a GPU the decode step is compiled with torch.compile (inductor, no cudagraphs) before capture: measured
    on an H200, 64% of the roofline against 46% for the captured eager kernels (docs/performance.md).
    R2_STATIC_DECODE_INDUCTOR=0 turns it off (capture only). On a CPU the step always runs eagerly."""
    choice = os.environ.get("R2_STATIC_DECODE_INDUCTOR")
    return torch.cuda.is_available() if choice is None else choice == "1"


def _outputs(requests: Sequence[GenerationRequest], batch: dict[str, Any], rows: list[list[int]],
             first_token_s: float | None, finished_s: float) -> list[GenerationOutput]:
    """One output per request: its new token ids (row i of the batch) and the batch's times."""
    prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
    return [
        GenerationOutput(request_id=request.request_id, prompt_tokens=int(prompt_lengths[index]),
                         output_token_ids=tuple(rows[index]), first_token_s=first_token_s, finished_s=finished_s)
        for index, request in enumerate(requests)
    ]


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self.model: Any = None
        self.tokenizer: Any = None
        self.decoder: Any = None
        self._eager_decoder: Any = None
        self._compiled_last_call = False
        self.memory: dict[str, Any] | None = None
        self.compile_cache: dict[str, Any] | None = None

    def load(self, model: ModelHandle) -> LoadedModelInfo:
        where = str(model.local_path or model.source)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            self.tokenizer = load_tokenizer(model.tokenizer_source, model.revision)
            if model.synthetic:
                from artifact.architectures import synthetic_model

                config = AutoConfig.from_pretrained(where, revision=model.revision)
                self.model = synthetic_model(config, self.device, self.dtype)
            else:
                self.model = AutoModelForCausalLM.from_pretrained(where, revision=model.revision, dtype=self.dtype)
                self.model.to(self.device)
        except (OSError, ValueError) as error:
            raise EngineError(
                f"model {model.name!r}: transformers could not load {where} (revision {model.revision}): {error}. "
                "If the Hub is unreachable, pre-fetch the model (`make fetch`) or point the config at a local path."
            ) from error
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            # Llama has no pad token; any id works for left padding because the attention mask hides it.
            self.tokenizer.pad_token = self.tokenizer.unk_token or self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.decoder = None
        self._eager_decoder = None
        if getattr(self.settings.transformers, "compile", False):
            from artifact.engines.static_decode import StaticDecoder

            inductor = _inductor_requested() and self.device.type == "cuda"
            if inductor:
                from artifact.engines.compile_cache import configure_compile_cache

                self.compile_cache = configure_compile_cache()
            self.decoder = StaticDecoder(self.model, eos_token_ids=self._eos_ids(), inductor=inductor,
                                         tuning=self.settings.transformers.tuning,
                                         window_bucket=self._attention_window(),
                                         pack_projections=self._pack_projections(),
                                         weight_layout=self.settings.transformers.weight_layout)
        info = describe_model(self.model, model.name, where, self.device)
        notes = list(info.notes)
        if model.synthetic:
            notes.append(
                f"synthetic weights: random N(0, 0.02) values in the exact shapes of {model.source} (config {where}); "
                "tokens/s is faithful (forced lengths), generated text is meaningless, characters/s comes only "
                "from the projection"
            )
        self.memory = {"weights_bytes": float(info.weight_bytes)}
        self._note_peak_memory()
        return LoadedModelInfo(**{**info.__dict__, "settings": self.describe(), "notes": tuple(notes),
                                  "memory": self.memory})

    def _note_peak_memory(self) -> None:
        """Peak memory so far, into the dict the LoadedModelInfo holds (updated again at close(), after the trials)."""
        # Numbers only (the report formats each value); what peak_bytes measures is in describe()["peak_memory"].
        if self.device.type == "cuda":
            self.memory["peak_bytes"] = float(torch.cuda.max_memory_allocated(self.device))
        else:
            self.memory["peak_bytes"] = float(peak_rss_bytes())

    def _eos_ids(self) -> list[int]:
        # The same EOS the eager path's GenerationConfig forbids before min_new_tokens (= max_new_tokens).
        ids = [] if self.tokenizer.eos_token_id is None else [int(self.tokenizer.eos_token_id)]
        return [i for i in ids if 0 <= i < int(self.model.config.vocab_size)]

    def prepare(self, batch_sizes: Sequence[int], prompt_tokens: int, max_new_tokens: int) -> list[dict[str, Any]]:
        """Optional hook (call it untimed, as warm-up): capture the decode step for these batch sizes ahead."""
        if self.decoder is None:
            return []
        before = len(self.decoder.events)
        for batch in batch_sizes:
            self.decoder.prepare(batch, prompt_tokens + max_new_tokens)
        return self.decoder.events[before:]

    def _generation_config(self, max_new_tokens: int, temperature: float) -> GenerationConfig:
        sampling = temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=sampling,
            temperature=temperature if sampling else None,
            top_p=None,
            top_k=None,
            num_beams=1,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        if self.model is None:
            raise EngineError("generate() called before load()")
        first = requests[0]
        if any(request.continuation is not None for request in requests):
            return self._generate_fixed_text(requests)
        if any(request.max_new_tokens != first.max_new_tokens for request in requests):
            raise EngineError("one generate() call must use one generation length")
        batch = self.tokenizer([request.prompt for request in requests], return_tensors="pt", padding=True)
        batch = {key: value.to(self.device) for key, value in batch.items()}
        if self.decoder is not None:
            return self._generate_static(requests, batch)
        torch.manual_seed(first.seed)
        clock = _FirstTokenClock(self.synchronize)
        started = time.perf_counter()
        with torch.inference_mode():
            sequences = self.model.generate(
                **batch,
                generation_config=self._generation_config(first.max_new_tokens, first.temperature),
                streamer=clock,
            )
        self.synchronize()
        finished = time.perf_counter() - started
        prompt_width = batch["input_ids"].shape[1]
        first_token = None if clock.first_token_at is None else clock.first_token_at - started
        return _outputs(requests, batch, sequences[:, prompt_width:].tolist(), first_token, finished)

    def _generate_static(self, requests: Sequence[GenerationRequest], batch: dict[str, Any]) -> list[GenerationOutput]:
        """The fast path (engine.transformers.compile = true): static cache + captured decode step."""
        first = requests[0]
        first_token_at: list[float] = []

        def first_token() -> None:
            self.synchronize()
            first_token_at.append(time.perf_counter())

        captures_before = len(self.decoder.events)
        started = time.perf_counter()
        new_tokens = self.decoder.generate(batch["input_ids"], batch["attention_mask"], first.max_new_tokens,
                                           temperature=first.temperature, seed=first.seed, on_first_token=first_token)
        rows = new_tokens.tolist()
        self.synchronize()
        finished = time.perf_counter() - started
        self._compiled_last_call = len(self.decoder.events) > captures_before
        first_token_s = first_token_at[0] - started if first_token_at else None
        return _outputs(requests, batch, rows, first_token_s, finished)

    def _fixed_text_decoder(self) -> Any:
        """The static decoder serves fixed text in every configuration: with compile = true the one that also
        serves generation (CUDA graph on a GPU); otherwise an eager one (no graph, no inductor), so fixed text
        runs with the same kind of kernels as that configuration's free generation."""
        if self.decoder is not None:
            return self.decoder
        if self._eager_decoder is None:
            from artifact.engines.static_decode import StaticDecoder

            # Separate products, as the model.generate() of this configuration's free generation runs them
            self._eager_decoder = StaticDecoder(self.model, eos_token_ids=self._eos_ids(), cuda_graph=False,
                                                window_bucket=self._attention_window())
        return self._eager_decoder

    def _generate_fixed_text(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """Fixed-text timing: prefill the prompt (BOS + its ids), then emit the continuation's own ids
        (`text_token_ids`: as the tokenizer stage counts them) one forced token per step. Batch 1."""
        if len(requests) != 1 or requests[0].continuation is None:
            raise EngineError("fixed-text timing serves one request per call, each with a continuation")
        request = requests[0]
        decoder = self._fixed_text_decoder()
        batch = self.tokenizer([request.prompt], return_tensors="pt")
        batch = {key: value.to(self.device) for key, value in batch.items()}
        reference = text_token_ids(self.tokenizer, [request.continuation])[0]
        if not reference:
            raise EngineError(f"request {request.request_id}: the continuation has no tokens")
        reference_ids = torch.tensor(reference, dtype=torch.long, device=self.device)
        first_token_at: list[float] = []

        def first_token() -> None:
            self.synchronize()
            first_token_at.append(time.perf_counter())

        captures_before = len(decoder.events)
        started = time.perf_counter()
        emitted = decoder.generate_fixed(batch["input_ids"], batch["attention_mask"], reference_ids,
                                         on_first_token=first_token)
        rows = emitted.tolist()
        self.synchronize()
        finished = time.perf_counter() - started
        self._compiled_last_call = len(decoder.events) > captures_before
        first_token_s = first_token_at[0] - started if first_token_at else None
        output = _outputs(requests, batch, rows, first_token_s, finished)[0]
        return [GenerationOutput(**{**output.__dict__, "reference_token_ids": tuple(reference)})]

    def compiled_during_last_call(self) -> bool:
        return self._compiled_last_call

    def call_shape(self, requests: Sequence[GenerationRequest]) -> Hashable:
        """What costs one-off work here. The static path compiles and captures one step per slot (batch bucket,
        cache-length bucket, greedy, forced), so calls that share a slot share their first-call cost; eager
        kernels have no per-shape work beyond the first call of a kind (batch size, sampling, fixed text)."""
        first = requests[0]
        forced = first.continuation is not None
        sampling = first.temperature > 0 and not forced
        decoder = self._fixed_text_decoder() if forced else self.decoder
        if decoder is None:
            return ("eager", len(requests), sampling, forced)
        from artifact.engines.static_decode import bucket_batch, bucket_length

        width = max(len(self.tokenizer(request.prompt)["input_ids"]) for request in requests)
        if forced:
            new = max(len(ids) for ids in text_token_ids(self.tokenizer, [request.continuation for request in requests]))
        else:
            new = first.max_new_tokens
        rows = bucket_batch(len(requests)) if decoder.cuda_graph else len(requests)
        return ("static", rows, bucket_length(width + new, rows), not sampling, forced)

    def decode(self, token_ids: Sequence[int]) -> str:
        # A synthetic model may use a larger vocabulary than the tokenizer it was given (Swallow shape, Llama 2
        # tokenizer): ids the tokenizer does not know have no text, so they are left out of the characters.
        known = len(self.tokenizer)
        return self.tokenizer.decode([i for i in token_ids if i < known], skip_special_tokens=True)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        if self.model is not None and getattr(self, "memory", None) is not None:
            self._note_peak_memory()
        for decoder in (getattr(self, "decoder", None), getattr(self, "_eager_decoder", None)):
            if decoder is not None:
                decoder.release()
        self.decoder = None
        self._eager_decoder = None
        self.model = None
        self.tokenizer = None
        # A decoder holds its compiled step, a bound method of itself: a reference cycle through the model, so
        # without a collection here the weights (gigabytes on a GPU) would outlive close() until the collector ran.
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "engine": self.name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "generation": "model.generate, greedy unless temperature > 0, min_new_tokens = max_new_tokens",
            "fixed_text": "prompt tokenised as a prompt (BOS + its ids) and prefilled; the continuation's own ids "
                          "(no BOS, the model's normaliser and dummy prefix: as the tokenizer stage counts them) "
                          "emitted one forced token per step by the static decode step, next input read on the "
                          "device from a buffer of the reference ids"
                          + (" (captured in a CUDA graph)" if getattr(self.settings.transformers, "compile", False)
                             and self.device.type == "cuda" else " (eager step)"),
            "static_decode_attention": (f"reads the written cache slots rounded up to {self._attention_window()}"
                                        if self._attention_window() else "reads every slot of the static cache"),
            "static_decode_projections": self._projections_description(),
            "static_decode_weight_layout": self._layout_description(),
            "peak_memory": "peak_bytes = torch.cuda.max_memory_allocated since load (weights, KV cache, activations)"
                           if self.device.type == "cuda" else
                           "peak_bytes = peak RSS of this process (resource.getrusage ru_maxrss; includes earlier models)",
        } | self._fast_path_description()

    def _attention_window(self) -> int:
        """The configured window step, or 0 where the loaded model does not attend with SDPA (it keeps its own
        attention over the whole cache)."""
        from artifact.engines.windowed_attention import can_window

        window = int(getattr(self.settings.transformers, "attention_window", 64))
        return window if self.model is None or can_window(self.model) else 0

    def _pack_projections(self) -> bool:
        return bool(getattr(self.settings.transformers, "pack_projections", True))

    def _projections_description(self) -> str:
        from artifact.engines.packed_projections import packable

        if not self._pack_projections():
            return "separate products, as in the model's own forward"
        if not getattr(self.settings.transformers, "compile", False):
            return "separate products (pack_projections applies to the compiled decode path, compile = true)"
        groups = packable(self.model) if self.model is not None else []
        if not groups:
            return "separate products (no q/k/v or gate/up projections found to pack)"
        counts = {names: groups.count(names) for names in dict.fromkeys(groups)}
        return "packed, one matrix product per group: " + "; ".join(
            f"{count} x ({', '.join(names)})" for names, count in counts.items())

    def _layout_description(self) -> str:
        decoder = getattr(self, "decoder", None)
        if decoder is None:
            return "out-major, as loaded (weight_layout applies to the compiled decode path, compile = true)"
        moved, total = decoder.weight_layout_counts
        if self.settings.transformers.weight_layout == "in-major" and (moved < total or not total):
            return (f"in-major requested: {moved} of {total} projection weights stored in-major, the rest left as "
                    "loaded (tied to another parameter, or none found)")
        if decoder.weight_layout == "in-major":
            return f"in-major: the decoder layers' {total} projection weights stored (inputs, outputs), as transposed views"
        return "out-major, as loaded"

    def _fast_path_description(self) -> dict[str, Any]:
        if not getattr(self.settings.transformers, "compile", False):
            return {}
        decoder = getattr(self, "decoder", None)
        graph = self.device.type == "cuda"
        return {
            "generation": "static decode: transformers modelling code + StaticCache; prefill eager; decode step "
                          + ("captured in a CUDA graph" if graph else "eager (no CUDA on this device)")
                          + (" after torch.compile (inductor, no cudagraphs)" if graph and _inductor_requested() else "")
                          + "; greedy unless temperature > 0 (seeded sampling); EOS masked so length = max_new_tokens",
            # The decoder's own list, not a copy: described at load, it fills during the warm-up that follows, and
            # models.json is written after it (as `memory` is updated in place).
            "decode_captures": [] if decoder is None else decoder.events,
            "inductor_tuning": self.settings.transformers.tuning if graph and _inductor_requested() else None,
            "compile_cache": self.compile_cache,
        }
