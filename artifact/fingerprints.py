"""Content fingerprints of a run's inputs: what the records depend on besides the config's own fields.

A path names a file; its content is what was measured. An edited prompt file, a retrained tokenizer or a
replaced model folder under the same path must not be mixed into one run by `--resume`, so each input's sha256
goes into the run's fingerprint, and a mismatch names the input (or config field) that changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from artifact.config import ExperimentConfig
from artifact.corpora import PROMPTS_FILENAME
from artifact.data import dataset_dir, load_manifest
from artifact.engines.base import ModelHandle

# Parts of the config that do not change what is measured (cost assumptions, analysis settings, where the
# config file lives): a resume may change them.
NOT_FINGERPRINTED = ("source", "cost", "analysis")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_folder(folder: Path) -> str:
    """Every file under `folder` (relative name and content), in a fixed order; hidden entries (caches, locks)
    are left out."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            digest.update(f"{relative.as_posix()}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()


def sha256_source(source: str | Path) -> str | None:
    """A local file or folder's content hash; None for a Hub id (its pinned revision is in the config)."""
    path = Path(source).expanduser()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        return sha256_folder(path)
    return None


def input_fingerprints(config: ExperimentConfig, handles: dict[str, ModelHandle]) -> dict[str, str]:
    """Label -> sha256 of every local input: the prompts, each corpus of the tokens stage, each model's weights
    folder and tokenizer. Corpora from the manifest are named by the sha256 the manifest pins (and the loader
    verifies); the committed prompts corpus is hashed."""
    inputs = {"generation.prompts": sha256_file(config.generation.prompts)}
    manifest = None
    for corpus in config.tokens.corpora:
        if corpus == "prompts":
            inputs["tokens.corpora.prompts"] = sha256_file(dataset_dir() / PROMPTS_FILENAME)
            continue
        manifest = manifest or load_manifest()
        inputs[f"tokens.corpora.{corpus}"] = manifest.by_loader(corpus).sha256
    for name, handle in handles.items():
        if handle.local_path is not None:
            inputs[f"models.{name}.weights"] = sha256_folder(handle.local_path)
        tokenizer = sha256_source(handle.tokenizer_source)
        if tokenizer is not None:
            inputs[f"models.{name}.tokenizer"] = tokenizer
    return inputs


def fingerprinted_config(config: ExperimentConfig) -> dict[str, Any]:
    payload = config.to_dict()
    for key in NOT_FINGERPRINTED:
        payload.pop(key, None)
    return payload


def fingerprint(config: ExperimentConfig, inputs: dict[str, str]) -> str:
    payload = {"config": fingerprinted_config(config), "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def differences(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two JSON-like trees."""
    if isinstance(stored, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(stored) | set(current), key=str):
            found += differences(stored.get(key), current.get(key), f"{prefix}.{key}" if prefix else str(key))
        return found
    if isinstance(stored, list) and isinstance(current, list) and len(stored) == len(current):
        found = []
        for index, (old, new) in enumerate(zip(stored, current, strict=True)):
            found += differences(old, new, f"{prefix}[{index}]")
        return found
    return [] if stored == current else [prefix or "(whole config)"]
