"""Declared model architectures, and shape-faithful synthetic models built from them.

Decode speed with forced output lengths depends on a model's shapes (layers, hidden size, heads, vocabulary),
never on its weight values, so a model with random weights of the right shapes decodes at the real model's
tokens/s. Characters/s then comes only from the projection (tokens/s x characters per token of the real
tokenizer on the reference corpus), and the report says so.

The dicts below are the shape fields of each model's public `config.json` on the Hugging Face Hub
(../shared/docs/r2-claim.md lists the facts): Swallow-7b/13b/70b are Llama-2-7b/13b/70b with the vocabulary
expanded from 32,000 to 43,176 pieces; the NVE ("no vocabulary expansion") twins keep 32,000.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact.errors import ConfigError
from artifact.toml_fields import did_you_mean

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

LLAMA2_VOCAB = 32_000
SWALLOW_VOCAB = 43_176

_COMMON: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pretraining_tp": 1,
    "torch_dtype": "bfloat16",
}
_SIZES: dict[str, dict[str, int]] = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32},
    "13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
            "num_key_value_heads": 40},
    "70b": {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
            "num_key_value_heads": 8},
}
_FAMILIES = {  # name prefix -> (Hub repo pattern, vocabulary size)
    "swallow": ("tokyotech-llm/Swallow-{size}-hf", SWALLOW_VOCAB),
    "swallow-nve": ("tokyotech-llm/Swallow-{size}-NVE-hf", LLAMA2_VOCAB),
    "llama-2": ("meta-llama/Llama-2-{size}-hf", LLAMA2_VOCAB),
}


def _declare() -> dict[str, dict[str, Any]]:
    declared: dict[str, dict[str, Any]] = {}
    for family, (repo, vocab) in _FAMILIES.items():
        for size, shape in _SIZES.items():
            name = f"{family}-{size}" if family != "swallow-nve" else f"swallow-{size}-nve"
            declared[name] = {**_COMMON, **shape, "vocab_size": vocab, "_name_or_path": repo.format(size=size)}
    return declared


ARCHITECTURES: dict[str, dict[str, Any]] = _declare()


def architecture_names() -> list[str]:
    return sorted(ARCHITECTURES)


def architecture_dict(name_or_path: str) -> dict[str, Any]:
    """The config dict of a declared architecture, or of a local config.json (or a folder holding one)."""
    if name_or_path in ARCHITECTURES:
        return dict(ARCHITECTURES[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"architecture {name_or_path!r}: cannot read {path} as JSON: {error}") from error
        if not isinstance(data, dict) or "model_type" not in data:
            raise ConfigError(f"architecture {name_or_path!r}: {path} is not a Hugging Face config.json (no model_type)")
        return data
    names = architecture_names()
    raise ConfigError(
        f"architecture {name_or_path!r} is neither a declared architecture{did_you_mean(name_or_path, names)} nor a "
        f"local config.json. Declared: {', '.join(names)}"
    )


def materialize(name_or_path: str, root: Path) -> Path:
    """Write the architecture's config.json into `root/<name>/` (once) and return that folder for the engine."""
    data = architecture_dict(name_or_path)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    label = name_or_path if name_or_path in ARCHITECTURES else f"local-{digest}"
    folder = root / label
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "config.json"
    text = json.dumps(data, indent=2, sort_keys=True)
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        tmp = folder / "config.json.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    return folder


def build_config(data: dict[str, Any]) -> PretrainedConfig:
    from transformers import AutoConfig

    fields = {key: value for key, value in data.items() if key not in {"model_type", "_name_or_path", "transformers_version"}}
    return AutoConfig.for_model(data["model_type"], **fields)


def synthetic_model(config: PretrainedConfig, device: torch.device | str, dtype: torch.dtype, *, seed: int = 0,
                    std: float = 0.02) -> torch.nn.Module:
    """A randomly initialised causal LM of `config`'s exact shapes, allocated directly on `device` in `dtype`.

    No CPU copy and no transformers initialisation pass: parameters are allocated uninitialised on the device
    (`no_init_weights`), then every matrix is filled with N(0, std) from a seeded device generator and every
    norm weight with 1, so activations stay finite (no NaN/inf that would send kernels down odd paths).
    Non-persistent buffers (rotary frequencies) are computed by the modelling code itself on the device.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    device = torch.device(device)
    with torch.device(device), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.fill_(1.0 if "norm" in name else 0.0)
            else:
                parameter.normal_(0.0, std, generator=generator)
    return model.eval()
