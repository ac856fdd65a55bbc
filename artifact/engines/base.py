"""The one interface every inference engine implements, and the plain data it exchanges with the runner.

The runner owns the wall clock: it calls `synchronize()` and reads a monotonic clock around each
`generate` call, the same way for every engine. Engines report only what they alone can see (the time
the first token came out), and the token ids they produced, so lengths are verified from what came back.
"""

from __future__ import annotations

import resource
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact.config import EngineSettings


# The config fields that describe a model's shape (Llama and GPT-2 names), as recorded for every loaded model.
SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "n_embd", "n_layer", "n_head", "max_position_embeddings", "n_positions")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (the CPU's "device memory")."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


@dataclass(frozen=True)
class LoadedModelInfo:
    """What the engine loaded: the facts the confound checks and the roofline need."""

    name: str
    local_path: str
    architecture: str
    vocab_size: int
    parameter_count: int
    weight_bytes: int
    dtype: str
    device: str
    shape: dict[str, int] = field(default_factory=dict)
    # Peak memory in bytes and what measured it ("peak_source"); an engine may update this dict in place until
    # close(), so what the run directory stores covers the trials too.
    memory: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelHandle:
    """A model ready to load: where its files are (or its Hub id and revision) and how to build it."""

    name: str
    role: str
    source: str
    revision: str | None
    synthetic: bool
    tokenizer_source: str
    local_path: Path | None = None


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_id: str
    prompt: str
    max_new_tokens: int
    seed: int
    temperature: float = 0.0
    # Fixed-text timing: the text the model must emit after `prompt`, one forced token per decode step (its own
    # tokenization); None for free generation.
    continuation: str | None = None


@dataclass(frozen=True)
class GenerationOutput:
    """One request's result. Times are seconds from the start of the engine call that served it."""

    request_id: str
    prompt_tokens: int
    output_token_ids: tuple[int, ...]
    first_token_s: float | None
    finished_s: float | None = None
    error: str | None = None
    # Fixed-text timing: the continuation's ids in this model's tokenization (what the engine had to emit);
    # None for free generation.
    reference_token_ids: tuple[int, ...] | None = None


class Engine(ABC):
    """load -> warm up (plain generate calls the runner marks as warm-up) -> generate ... -> close."""

    name: str = "engine"

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings

    @abstractmethod
    def load(self, model: ModelHandle) -> LoadedModelInfo:
        """Load weights and tokenizer; raise EngineError with the cause and the fix when it cannot."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """Serve `requests` together (one request = batch 1). Lengths are forced: min = max, EOS ignored."""

    @abstractmethod
    def decode(self, token_ids: Sequence[int]) -> str:
        """The text of `token_ids` by the loaded model's own tokenizer, special tokens dropped."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for queued device work so that a clock read after it is honest."""

    @abstractmethod
    def close(self) -> None:
        """Free the model and its device memory."""

    def describe(self) -> dict[str, Any]:
        """Engine name, version and the settings actually in force, for the run record."""
        return {"engine": self.name}

    def call_shape(self, requests: Sequence[GenerationRequest]) -> Hashable:
        """What makes a call new to this engine (its first call at a shape pays one-off work: compiling, graph
        capture, kernel generation). The warm-up serves one call per shape the measured calls use, and a
        measured call at a shape not served since load is timed again. By default only an identical call
        counts as the same shape; engines that know their shapes say so (prompt lengths, batch size)."""
        return tuple((request.prompt, request.continuation, request.max_new_tokens, request.temperature > 0)
                     for request in requests)

    def compiled_during_last_call(self) -> bool:
        """True when the last generate() compiled or captured something (a shape warm-up had not covered):
        its time then holds one-off work, and the runner serves a measured call again."""
        return False
