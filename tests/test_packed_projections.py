"""Packed projections of the static decode path: packing keeps every weight value and the model's own forward,
the decoder's packed step gives the separate step's logits (with and without biases, MHA and GQA), each group is
one matrix product, and misuse fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from artifact.architectures import architecture_dict, build_config, synthetic_model
from artifact.config import ConfigError, EngineSettings, ModelSpec, TransformersSettings, load_config
from artifact.engines.hf import TransformersEngine
from artifact.engines.packed_projections import PackedMember, pack, packable, packed
from artifact.engines.static_decode import StaticDecoder
from artifact.models import resolve_model


def _model(*, kv_heads: int = 2, bias: bool = False, seed: int = 0) -> nn.Module:
    data = {**architecture_dict("llama-2-7b"), "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": kv_heads, "vocab_size": 512,
            "attention_bias": bias, "mlp_bias": bias}
    return synthetic_model(build_config(data), "cpu", torch.float32, seed=seed, std=0.05)


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("bias", [False, True])
def test_packing_keeps_every_value_and_the_models_own_forward(bias: bool) -> None:
    model = _model(bias=bias)
    ids = torch.randint(3, 512, (2, 9), generator=torch.Generator().manual_seed(1))
    before_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    before = _logits(model, ids)
    groups = pack(model)
    assert [group.names for group in groups] == [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")] * 2
    after_state = model.state_dict()
    assert after_state.keys() == before_state.keys()
    assert all(torch.equal(after_state[name], before_state[name]) for name in before_state)
    attention = model.model.layers[0].self_attn
    packed_weight = groups[0].weight
    assert attention.q_proj.weight.data_ptr() == packed_weight.data_ptr()  # views: no second copy of the weights
    assert attention.v_proj.weight.data_ptr() == packed_weight[256 + 64:].data_ptr()
    assert (groups[0].bias is not None) == bias
    assert torch.equal(_logits(model, ids), before)  # the model's own forward is untouched
    assert pack(model) is groups  # packed once


@pytest.mark.parametrize("kv_heads,bias", [(8, False), (2, False), (2, True)])
def test_packed_forward_gives_the_separate_products_logits(kv_heads: int, bias: bool) -> None:
    model = _model(kv_heads=kv_heads, bias=bias)
    ids = torch.randint(3, 512, (1, 12), generator=torch.Generator().manual_seed(2))
    separate = _logits(model, ids)
    groups = pack(model)
    calls: list[str] = []
    original_linear = torch.nn.functional.linear

    def counting_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        calls.append("packed" if any(weight is group.weight for group in groups) else "separate")
        return original_linear(x, weight, bias)

    with packed(model):
        attention = model.model.layers[1].self_attn
        assert isinstance(attention.k_proj, PackedMember) and isinstance(model.model.layers[1].mlp.up_proj, PackedMember)
        torch.nn.functional.linear = counting_linear
        try:
            inside = _logits(model, ids)
        finally:
            torch.nn.functional.linear = original_linear
    # per layer: one packed q/k/v product, o_proj, one packed gate/up product, down_proj; then the LM head
    assert calls.count("packed") == 4 and calls.count("separate") == 2 * 2 + 1
    assert torch.allclose(inside, separate, rtol=1e-5, atol=1e-5), (inside - separate).abs().max()
    assert type(model.model.layers[1].self_attn.k_proj) is nn.Linear  # restored after the block
    assert all(group.product is None for group in groups)  # nothing held between calls


def test_decoder_steps_packed_and_separate_agree() -> None:
    """The decoder's prefill and every decode step (windows on) give the same logits packed as separate."""
    model = _model()
    ids = torch.randint(3, 512, (1, 70), generator=torch.Generator().manual_seed(3))
    outputs = {}
    for pack_projections in (False, True):
        decoder = StaticDecoder(model, eos_token_ids=[2], pack_projections=pack_projections)
        assert bool(decoder.packed_groups) == pack_projections
        slot = decoder.prepare(1, ids.shape[1] + 8)
        rows = []
        with torch.inference_mode(), decoder.scope():
            layer = model.model.layers[1]
            assert isinstance(layer.self_attn.v_proj, PackedMember) == pack_projections
            assert isinstance(layer.mlp.gate_proj, PackedMember) == pack_projections
            rows.append(decoder._prefill(slot, ids, torch.ones_like(ids)).clone())
            slot.ids.copy_(rows[0].argmax(dim=-1, keepdim=True))
            for index in range(1, 8):
                decoder.advance(slot, ids.shape[1] + index)
                rows.append(slot.logits.clone())
        outputs[pack_projections] = torch.cat(rows)
    assert torch.allclose(outputs[True], outputs[False], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_packed_step_is_one_graph_with_eager_generates_tokens(tmp_path, monkeypatch) -> None:
    """Under torch.compile the members' shared product traces into the step's one graph (no graph break, nothing
    compiled again on the next call) and the packed step keeps eager generate()'s greedy tokens."""
    from torch._dynamo.utils import counters
    from transformers import GenerationConfig

    from artifact.engines.compile_cache import CACHE_ENV

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("R2_CACHE_DIR", str(tmp_path / "cache"))
    model = _model()
    ids = torch.randint(3, 512, (1, 20), generator=torch.Generator().manual_seed(4))
    config = GenerationConfig(max_new_tokens=10, min_new_tokens=10, do_sample=False, eos_token_id=2, pad_token_id=0)
    with torch.inference_mode():
        expected = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)[:, 20:]
    torch._dynamo.reset()
    counters.clear()
    decoder = StaticDecoder(model, eos_token_ids=[2], inductor=True, pack_projections=True)
    assert torch.equal(decoder.generate(ids, torch.ones_like(ids), 10), expected)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 1 and not counters["graph_break"]
    # The compiled step reads the packed weights, not the modules' own: give the modules copies of their rows and
    # zero the packed tensors; the step's tokens must change (a step that ran separate products would keep them).
    with torch.no_grad():
        for group in decoder.packed_groups:
            for module in group.originals:
                module.weight.data = module.weight.data.clone()
            group.weight.zero_()
    assert not torch.equal(decoder.generate(ids, torch.ones_like(ids), 10), expected)
    assert counters["stats"]["unique_graphs"] == graphs  # and nothing was compiled again


def test_packed_blocks_nest_and_put_back_what_was_there() -> None:
    model = _model()
    pack(model)
    attention = model.model.layers[0].self_attn
    with packed(model):
        member = attention.q_proj
        with packed(model):
            assert attention.q_proj is member
        assert attention.q_proj is member  # the inner block left the outer one's members in place
    assert type(attention.q_proj) is nn.Linear


def test_a_member_called_with_another_input_fails_loudly() -> None:
    model = _model()
    pack(model)
    attention = model.model.layers[0].self_attn
    with packed(model):
        attention.q_proj(torch.randn(1, 1, 256))
        with pytest.raises(RuntimeError, match="pack_projections = false"):
            attention.k_proj(torch.randn(1, 1, 256))


def test_dropping_a_packed_model_frees_its_packed_weights_at_once() -> None:
    """Packing adds no reference cycle: the packed tensors go with the model's last reference."""
    import gc
    import weakref

    model = _model()
    packed_weights = [weakref.ref(group.weight) for group in pack(model)]
    gc.disable()
    try:
        del model
        assert all(weight() is None for weight in packed_weights)
    finally:
        gc.enable()


def test_closing_the_engine_frees_the_model_it_decoded_with(tiny_pair) -> None:
    """The decoder's compiled step is a bound method of itself (a cycle through the model): close() collects it,
    so the weights do not stay allocated into the next model's load."""
    import gc
    import weakref

    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu",
                                               transformers=TransformersSettings(compile=True)))
    engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
    engine.decoder.generate(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long), 3)
    weights = [weakref.ref(parameter) for parameter in engine.model.parameters()]
    gc.disable()  # only close()'s own collection may free them
    try:
        engine.close()
        assert all(weight() is None for weight in weights)
    finally:
        gc.enable()


def test_models_without_such_projections_are_left_alone() -> None:
    class TwoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.k_proj = nn.Linear(8, 8), nn.Linear(8, 8)  # no v_proj: not a q/k/v group

    model = TwoLayers()
    assert packable(model) == [] and pack(model) == []


def test_pack_projections_is_a_config_setting_recorded_by_the_engine(tiny_pair, tmp_path: Path) -> None:
    source = Path("artifact/configs/smoke.toml").read_text()
    config = tmp_path / "c.toml"
    config.write_text(source)
    assert load_config(config).engine.transformers.pack_projections is True  # on by default (measured on an H100)
    config.write_text(source + "\n[engine.transformers]\npack_projections = false\n")
    assert load_config(config).engine.transformers.pack_projections is False
    config.write_text(source + "\n[engine.transformers]\npack_projections = \"yes\"\n")
    with pytest.raises(ConfigError, match="pack_projections"):
        load_config(config)
    for pack_projections, expected in ((True, "packed, one matrix product per group: 2 x (q_proj, k_proj, v_proj); "
                                               "2 x (gate_proj, up_proj)"),
                                       (False, "separate products")):  # (the tiny model has two layers)
        engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu", transformers=TransformersSettings(
            compile=True, pack_projections=pack_projections)))
        engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
        assert engine.describe()["static_decode_projections"].startswith(expected)
        assert bool(engine.decoder.packed_groups) == pack_projections
    # Without compile, free generation is the model's own generate(): fixed text keeps its separate products too
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu", transformers=TransformersSettings(
        pack_projections=True)))
    engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
    assert engine.describe()["static_decode_projections"].startswith("separate products (pack_projections applies")
    assert engine._fixed_text_decoder().packed_groups == []
