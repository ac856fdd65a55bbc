"""Confound checks: a baseline must differ from the candidate in the vocabulary and nothing else that
changes speed. Read from each model's config (no weights), before anything runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from artifact.config import ExperimentConfig
from artifact.engines.base import ModelHandle
from artifact.errors import ConfigError

PARAMETER_TOLERANCE = 0.05
_SHAPE_FIELDS = {
    "layers": ("num_hidden_layers", "n_layer"),
    "hidden_size": ("hidden_size", "n_embd"),
    "attention_heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads",),
    "intermediate_size": ("intermediate_size", "n_inner"),
}


@dataclass(frozen=True)
class ArchitectureFacts:
    model: str
    architecture: str
    model_type: str
    vocab_size: int
    parameter_count: int
    embedding_parameters: int
    dtype: str
    shape: dict[str, int | None]


def _first(config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _stored_dtype(config: Any) -> str:
    # transformers 5 calls it `dtype`, 4.x `torch_dtype` (reading the old name in 5 prints a warning).
    values = config.to_dict()
    return str(values.get("dtype") or values.get("torch_dtype") or "unspecified").removeprefix("torch.")


def architecture_facts(handle: ModelHandle, architecture_config: Any | None = None) -> ArchitectureFacts:
    """Shape and parameter count from the model's config, counted on the meta device (no memory used)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = architecture_config
    if config is None:
        try:
            config = AutoConfig.from_pretrained(str(handle.local_path or handle.source), revision=handle.revision)
        except OSError as error:
            raise ConfigError(
                f"model {handle.name!r}: cannot read its config.json ({error}); pre-fetch it (`make fetch`, or the "
                "image's pre-fetch step) or point the config at a local folder"
            ) from error
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel()
    output = model.get_output_embeddings()
    if output is not None and output.weight is not model.get_input_embeddings().weight:
        embeddings += output.weight.numel()
    shape = {key: _first(config, names) for key, names in _SHAPE_FIELDS.items()}
    if shape["kv_heads"] is None:
        shape["kv_heads"] = shape["attention_heads"]
    return ArchitectureFacts(
        model=handle.name,
        architecture=(config.architectures or [type(model).__name__])[0],
        model_type=config.model_type,
        vocab_size=int(config.vocab_size),
        parameter_count=int(parameters),
        embedding_parameters=int(embeddings),
        dtype=_stored_dtype(config),
        shape=shape,
    )


def compare(candidate: ArchitectureFacts, baseline: ArchitectureFacts) -> dict[str, Any]:
    """Differences other than the vocabulary (and the embedding rows it implies); a parameter-count gap
    over 5% outside the embeddings, or any architecture or shape difference, confounds the comparison."""
    differences = []
    if candidate.model_type != baseline.model_type or candidate.architecture != baseline.architecture:
        differences.append(f"architecture {baseline.architecture} ({baseline.model_type}) vs the candidate's "
                           f"{candidate.architecture} ({candidate.model_type})")
    for key, value in baseline.shape.items():
        if value != candidate.shape[key]:
            differences.append(f"{key} {value} vs the candidate's {candidate.shape[key]}")
    if baseline.dtype != candidate.dtype:
        differences.append(f"stored dtype {baseline.dtype} vs the candidate's {candidate.dtype}")
    # The vocabulary is the variable under test: its embedding rows are expected to differ.
    body_candidate = candidate.parameter_count - candidate.embedding_parameters
    body_baseline = baseline.parameter_count - baseline.embedding_parameters
    body_gap = abs(body_baseline - body_candidate) / body_candidate if body_candidate else 0.0
    total_gap = abs(baseline.parameter_count - candidate.parameter_count) / candidate.parameter_count
    if body_gap > PARAMETER_TOLERANCE:
        differences.append(
            f"parameters outside the embeddings {body_baseline:,} vs the candidate's {body_candidate:,} "
            f"({body_gap:.0%} apart, more than {PARAMETER_TOLERANCE:.0%})"
        )
    confounded = body_gap > PARAMETER_TOLERANCE or any(not text.startswith("stored dtype") for text in differences)
    summary = ("differs from the candidate only in the vocabulary" if not differences
               else "; ".join(differences))
    return {
        "confounded": confounded,
        "differences": differences,
        "summary": summary,
        "parameter_gap_total": total_gap,
        "parameter_gap_outside_embeddings": body_gap,
        "candidate": asdict(candidate),
        "baseline": asdict(baseline),
    }


def check_confounds(config: ExperimentConfig, facts: dict[str, ArchitectureFacts]) -> dict[str, dict[str, Any]]:
    candidate = facts[config.candidate.name]
    return {baseline.name: compare(candidate, facts[baseline.name]) for baseline in config.baselines}
