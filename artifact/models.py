"""Model resolution: a config's model entry -> a handle an engine can load (Hub id@revision, folder, built-in).

`weights = "synthetic"` with `architecture = "<declared name>"` (see artifact/architectures.py) or
`architecture = "<path to a config.json>"` points the handle at a folder holding only that config.json; the
engine then builds a randomly initialised model of exactly those shapes on the device. The repo/path entry
stays the provenance label, and the tokenizer comes from `tokenizer` (else from the repo/path).
"""

from __future__ import annotations

from artifact.config import ModelSpec
from artifact.engines.base import ModelHandle
from artifact.errors import ConfigError
from artifact.paths import cache_dir
from artifact.tiny import ensure_tiny_pair


def resolve_model(spec: ModelSpec) -> ModelHandle:
    synthetic = spec.weights == "synthetic"
    if spec.architecture is not None:
        if not synthetic:
            raise ConfigError(
                f"model {spec.name!r}: 'architecture' only applies to weights = \"synthetic\" (real weights bring their "
                "own config.json); remove it or set weights = \"synthetic\""
            )
        from artifact.architectures import materialize

        folder = materialize(spec.architecture, cache_dir() / "architectures")
        source = spec.repo or (str(spec.path) if spec.path else f"builtin:{spec.builtin}")
        tokenizer = spec.tokenizer or (str(spec.path) if spec.path else spec.repo)
        if tokenizer is None:
            raise ConfigError(f"model {spec.name!r}: a synthetic model needs a 'tokenizer' (folder, tokenizer.model or Hub id)")
        return ModelHandle(spec.name, spec.role, source, spec.revision, True, tokenizer, folder)
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
