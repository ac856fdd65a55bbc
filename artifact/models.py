"""Model resolution: a config's model entry -> a handle an engine can load (Hub id@revision, folder, built-in)."""

from __future__ import annotations

from artifact.config import ModelSpec
from artifact.engines.base import ModelHandle
from artifact.errors import ConfigError
from artifact.tiny import ensure_tiny_pair


def resolve_model(spec: ModelSpec) -> ModelHandle:
    synthetic = spec.weights == "synthetic"
    if spec.builtin:
        folder = ensure_tiny_pair().folder(spec.builtin)
        return ModelHandle(spec.name, spec.role, str(folder), None, synthetic, spec.tokenizer or str(folder), folder)
    if spec.path:
        if not (spec.path / "config.json").is_file():
            raise ConfigError(
                f"model {spec.name!r}: path {spec.path} has no config.json; point 'path' at a folder saved with "
                "save_pretrained (or a Hugging Face snapshot folder)"
            )
        return ModelHandle(spec.name, spec.role, str(spec.path), None, synthetic, spec.tokenizer or str(spec.path), spec.path)
    assert spec.repo is not None  # the config guarantees exactly one source
    return ModelHandle(spec.name, spec.role, spec.repo, spec.revision, synthetic, spec.tokenizer or spec.repo)
