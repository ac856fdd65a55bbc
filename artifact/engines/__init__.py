"""Engine registry: names map to "module:Class" strings so an engine's heavy imports load only when chosen."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from artifact.config import EngineSettings
from artifact.engines.base import Engine
from artifact.errors import EngineError

ENGINE_CLASSES = {
    "transformers": "artifact.engines.hf:TransformersEngine",
    "vllm": "artifact.engines.vllm:VLLMEngine",
}


@dataclass(frozen=True)
class EngineChoice:
    """The engine class to use, and why (a fallback from vLLM is recorded, never silent)."""

    name: str
    engine_class: type[Engine]
    fallback_reason: str | None = None


def _import(name: str) -> type[Engine]:
    module_name, _, class_name = ENGINE_CLASSES[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def choose_engine(settings: EngineSettings) -> EngineChoice:
    if settings.name != "auto":
        try:
            return EngineChoice(settings.name, _import(settings.name))
        except ImportError as error:
            raise EngineError(
                f"engine {settings.name!r} cannot be imported ({error}). Install it, or set engine.name = \"auto\" "
                "to fall back to transformers"
            ) from error
    try:
        return EngineChoice("vllm", _import("vllm"))
    except ImportError as error:
        return EngineChoice("transformers", _import("transformers"), f"vLLM could not be imported: {error}")
