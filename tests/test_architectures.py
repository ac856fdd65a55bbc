"""Shape-faithful synthetic models: declared shapes, vocabulary, finite values; unknown names are refused."""

from __future__ import annotations

import json

import pytest
import torch

from artifact.architectures import ARCHITECTURES, architecture_dict, build_config, materialize, synthetic_model
from artifact.config import ModelSpec
from artifact.errors import ConfigError
from artifact.models import resolve_model


@pytest.mark.parametrize("name,vocab", [("swallow-7b", 43_176), ("swallow-7b-nve", 32_000), ("llama-2-7b", 32_000)])
def test_declared_7b_shapes_on_meta(name: str, vocab: int) -> None:
    from transformers import AutoModelForCausalLM

    config = build_config(architecture_dict(name))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert model.get_input_embeddings().weight.shape == (vocab, 4096)
    assert model.lm_head.weight.shape == (vocab, 4096)
    assert len(model.model.layers) == 32
    layer = model.model.layers[0]
    assert layer.mlp.gate_proj.weight.shape == (11008, 4096)
    assert layer.self_attn.k_proj.weight.shape == (4096, 4096)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == 6_738_415_616 + (vocab - 32_000) * 4096 * 2  # Llama-2-7b's count, plus the new rows


def test_declared_family() -> None:
    assert {"swallow-13b", "swallow-70b", "swallow-70b-nve", "llama-2-13b", "llama-2-70b"} <= set(ARCHITECTURES)
    assert ARCHITECTURES["swallow-70b"]["num_key_value_heads"] == 8
    assert ARCHITECTURES["swallow-70b"]["vocab_size"] == 43_176


def test_small_synthetic_model_is_built_with_exact_shapes(tmp_path) -> None:
    data = {**architecture_dict("swallow-7b"), "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300}
    (tmp_path / "config.json").write_text(json.dumps(data))
    model = synthetic_model(build_config(architecture_dict(str(tmp_path / "config.json"))), "cpu", torch.bfloat16)
    assert model.lm_head.weight.shape == (300, 64)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (32, 64)
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in model.parameters())
    assert torch.equal(model.model.norm.weight, torch.ones(64, dtype=torch.bfloat16))
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()


def test_unknown_architecture_lists_declared() -> None:
    with pytest.raises(ConfigError, match="swallow-7b-nve") as error:
        architecture_dict("swallow-7c")
    assert "did you mean" in str(error.value)


def test_resolve_synthetic_model_points_at_materialized_config(tmp_path) -> None:
    spec = ModelSpec(name="s", role="candidate", repo="tokyotech-llm/Swallow-7b-hf", revision="a" * 40,
                     weights="synthetic", architecture="swallow-7b", tokenizer=str(tmp_path))
    handle = resolve_model(spec)
    assert handle.synthetic and handle.tokenizer_source == str(tmp_path)
    assert json.loads((handle.local_path / "config.json").read_text())["vocab_size"] == 43_176
    assert materialize("swallow-7b", tmp_path) == tmp_path / "swallow-7b"
    with pytest.raises(ConfigError, match="only applies"):
        resolve_model(ModelSpec(name="r", role="candidate", repo="a/b", revision="a" * 40, architecture="swallow-7b"))
