"""Checks that need the models' tokenizers and configs but no weights: they run before the run directory exists,
so a prompt that cannot fit fails in seconds instead of after minutes of loading (or as an out-of-memory crash)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from artifact.config import EngineSettings
from artifact.engines.base import ModelHandle
from artifact.errors import ConfigError
from artifact.plan import Plan
from artifact.tokenization import count_tokens, load_tokenizer

# Counted on top of the prompt's own tokens: the BOS token the engines add.
SPECIAL_TOKENS_ADDED = 1


def context_length(handle: ModelHandle) -> int | None:
    """The model's position limit from its config.json (a local folder, or the Hub cache; None when unknown)."""
    config_file: Path | None = None
    if handle.local_path is not None and (handle.local_path / "config.json").is_file():
        config_file = handle.local_path / "config.json"
    elif handle.revision is not None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(handle.source, "config.json", revision=handle.revision)
        config_file = Path(cached) if isinstance(cached, str) else None
    if config_file is None:
        return None
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def check_prompt_lengths(plan: Plan, handles: dict[str, ModelHandle], engine: EngineSettings) -> dict[str, Any]:
    """Every planned prompt plus the forced output length must fit every model's context (and vLLM's
    max_model_len when vLLM may serve it). Returns what was checked, for the run directory."""
    requests = {request.prompt_id: request for block in plan.measured for request in block.requests}
    if not requests:
        return {}
    max_new = max(request.max_new_tokens for request in requests.values())
    checked: dict[str, Any] = {}
    for name, handle in handles.items():
        limits = {}
        context = context_length(handle)
        if context is not None:
            limits["the model's max_position_embeddings"] = context
        if engine.name in ("vllm", "auto"):
            limits["engine.vllm.max_model_len"] = engine.vllm.max_model_len
        if not limits:
            checked[name] = {"checked": False, "reason": "context length unknown before the model is fetched"}
            continue
        limit_name, limit = min(limits.items(), key=lambda item: item[1])
        tokenizer = load_tokenizer(handle.tokenizer_source, handle.revision)
        ids = list(requests)
        texts = [requests[prompt_id].prompt + (requests[prompt_id].continuation or "") for prompt_id in ids]
        counts = [count + SPECIAL_TOKENS_ADDED for count in count_tokens(tokenizer, texts)]
        too_long = [(prompt_id, count) for prompt_id, count in zip(ids, counts, strict=True) if count + max_new > limit]
        if too_long:
            worst_id, worst = max(too_long, key=lambda item: item[1])
            raise ConfigError(
                f"model {name!r}: {len(too_long)} prompt(s) do not fit its context of {limit} tokens ({limit_name}) "
                f"with {max_new} forced new tokens; the longest, {worst_id!r}, has {worst} prompt tokens. Shorten or "
                f"drop those prompts, or lower generation.max_new_tokens"
            )
        checked[name] = {"checked": True, "limit": limit, "limit_from": limit_name,
                         "longest_prompt_tokens": max(counts), "max_new_tokens": max_new}
    return checked
