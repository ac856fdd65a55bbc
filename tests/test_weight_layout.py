"""Weight layout of the static decode path: storing the projection weights in-major keeps every value, the model's
own forward and the decoder's tokens, keeps packed groups as views of one tensor, leaves tied weights and the LM head
alone, and is a validated config setting recorded by the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from artifact.architectures import architecture_dict, build_config, synthetic_model
from artifact.config import ConfigError, EngineSettings, ModelSpec, TransformersSettings, load_config
from artifact.engines.hf import TransformersEngine
from artifact.engines.packed_projections import pack, packed
from artifact.engines.static_decode import StaticDecoder
from artifact.engines.packed_projections import packed_groups
from artifact.engines.weight_layout import PROJECTIONS, is_in_major, layout_counts, layout_of, relayout
from artifact.models import resolve_model


def _model(seed: int = 0) -> nn.Module:
    data = {**architecture_dict("llama-2-7b"), "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 512}
    return synthetic_model(build_config(data), "cpu", torch.float32, seed=seed, std=0.05)


def _projection_weights(model: nn.Module) -> list[torch.Tensor]:
    return [getattr(getattr(layer, part), name).weight for layer in model.model.layers
            for part, names in (("self_attn", PROJECTIONS[:4]), ("mlp", PROJECTIONS[4:])) for name in names]


def _greedy(model: nn.Module, ids: torch.Tensor, tokens: int = 8) -> torch.Tensor:
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, eos_token_id=2,
                              pad_token_id=0)
    with torch.inference_mode():
        return model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)[:, ids.shape[1]:]


def test_relayout_keeps_every_value_and_the_models_own_forward() -> None:
    model = _model()
    ids = torch.randint(3, 512, (2, 9), generator=torch.Generator().manual_seed(1))
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    tokens = _greedy(model, ids[:1])
    untouched = {name: model.get_parameter(name).data_ptr() for name in ("model.embed_tokens.weight", "lm_head.weight")}
    assert layout_of(model) == "out-major" and not any(is_in_major(weight) for weight in _projection_weights(model))
    assert relayout(model) == 2 * 7
    assert layout_of(model) == "in-major" and all(is_in_major(weight) for weight in _projection_weights(model))
    assert all(weight.shape == state[name].shape for name, weight in model.state_dict().items())
    assert all(torch.equal(model.state_dict()[name], state[name]) for name in state)  # the same values
    assert {name: model.get_parameter(name).data_ptr() for name in untouched} == untouched  # LM head, embeddings
    with torch.inference_mode():
        after = model(input_ids=ids).logits
    assert torch.allclose(after, before, rtol=1e-5, atol=1e-5), (after - before).abs().max()
    assert torch.equal(_greedy(model, ids[:1]), tokens)
    assert relayout(model) == 0  # once


@pytest.mark.parametrize("pack_first", [True, False])
def test_packed_groups_are_stored_in_major_as_one_tensor_of_views(pack_first: bool) -> None:
    model = _model()
    ids = torch.randint(3, 512, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        separate = model(input_ids=ids).logits
    if pack_first:
        groups = pack(model)
        relayout(model)
    else:  # packing a model already stored in-major keeps it in-major
        relayout(model)
        groups = pack(model)
    attention = model.model.layers[0].self_attn
    packed_weight = groups[0].weight
    assert is_in_major(packed_weight) and packed_weight.t().is_contiguous()
    assert attention.q_proj.weight.data_ptr() == packed_weight.data_ptr()  # views of the one packed tensor
    assert attention.k_proj.weight.data_ptr() == packed_weight[256:].data_ptr()
    assert layout_of(model) == "in-major"
    with packed(model), torch.inference_mode():
        inside = model(input_ids=ids).logits
    assert torch.allclose(inside, separate, rtol=1e-5, atol=1e-5), (inside - separate).abs().max()


def test_tied_projection_weights_are_left_as_they_are() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.o_proj, self.down_proj = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
            self.down_proj.weight = self.o_proj.weight  # one parameter, two modules

    model = Tied()
    assert relayout(model) == 0
    assert model.down_proj.weight is model.o_proj.weight and model.o_proj.weight.is_contiguous()
    assert layout_counts(model) == (0, 2) and layout_of(model) == "out-major"


def test_the_decoder_applies_the_layout_and_rejects_an_unknown_one() -> None:
    model = _model()
    ids = torch.randint(3, 512, (1, 10), generator=torch.Generator().manual_seed(3))
    expected = _greedy(model, ids)
    decoder = StaticDecoder(model, eos_token_ids=[2], pack_projections=True, weight_layout="in-major")
    assert decoder.weight_layout == "in-major" and all(is_in_major(weight) for weight in _projection_weights(model))
    assert torch.equal(decoder.generate(ids, torch.ones_like(ids), 8), expected)
    reference = torch.randint(3, 512, (6,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(decoder.generate_fixed(ids, torch.ones_like(ids), reference)[0], reference)
    assert decoder.weight_layout_counts == (14, 14)
    with pytest.raises(ValueError, match="already stored in-major"):  # a later decoder cannot quietly differ
        StaticDecoder(model, eos_token_ids=[2], weight_layout="out-major")
    later = StaticDecoder(model, eos_token_ids=[2])  # asked for no layout: keeps the model's, in-major here
    assert later.weight_layout == "in-major" and torch.equal(later.generate(ids, torch.ones_like(ids), 8), expected)
    assert StaticDecoder(_model(), eos_token_ids=[2]).weight_layout == "out-major"  # as loaded
    untouched = _model()
    with pytest.raises(ValueError, match="weight_layout must be one of out-major, in-major"):
        StaticDecoder(untouched, eos_token_ids=[2], pack_projections=True, weight_layout="columns")
    assert packed_groups(untouched) == []  # rejected before anything was changed


@pytest.mark.slow
def test_compiled_in_major_packed_step_keeps_eager_generates_tokens(tmp_path, monkeypatch) -> None:
    from torch._dynamo.utils import counters

    from artifact.engines.compile_cache import CACHE_ENV

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("R2_CACHE_DIR", str(tmp_path / "cache"))
    model = _model(seed=4)
    ids = torch.randint(3, 512, (1, 20), generator=torch.Generator().manual_seed(4))
    expected = _greedy(model, ids, 10)
    torch._dynamo.reset()
    counters.clear()
    decoder = StaticDecoder(model, eos_token_ids=[2], inductor=True, pack_projections=True, weight_layout="in-major")
    assert torch.equal(decoder.generate(ids, torch.ones_like(ids), 10), expected)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]


def test_weight_layout_is_a_config_setting_recorded_by_the_engine(tmp_path: Path) -> None:
    source = Path("artifact/configs/smoke.toml").read_text()
    config = tmp_path / "c.toml"
    config.write_text(source)
    assert load_config(config).engine.transformers.weight_layout == "in-major"  # the default
    config.write_text(source + "\n[engine.transformers]\nweight_layout = \"out-major\"\n")
    assert load_config(config).engine.transformers.weight_layout == "out-major"
    config.write_text(source + "\n[engine.transformers]\nweight_layout = \"columns\"\n")
    with pytest.raises(ConfigError, match="weight_layout"):
        load_config(config)
    for compile_step, layout, expected in ((True, "in-major", "in-major: "), (True, "out-major", "out-major, as loaded"),
                                           (False, "in-major", "out-major, as loaded (weight_layout applies")):
        engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu", transformers=TransformersSettings(
            compile=compile_step, weight_layout=layout)))
        engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
        assert engine.describe()["static_decode_weight_layout"].startswith(expected)
        assert layout_of(engine.model) == ("in-major" if compile_step and layout == "in-major" else "out-major")
        engine.close()
