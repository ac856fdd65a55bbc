"""Attention windows of the static decode path: the op reads only the window, the decoder's windows cover every
written slot (same greedy tokens as eager generate()), and slots past the window are never read (poisoned with
NaN, they change nothing; without windows they would)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from artifact.config import EngineSettings, ModelSpec, TransformersSettings
from artifact.engines.base import GenerationRequest
from artifact.engines.hf import TransformersEngine
from artifact.engines.static_decode import StaticDecoder
from artifact.engines.windowed_attention import additive_mask, attention_window, window_for, windows
from artifact.models import resolve_model

PROMPT = "吾輩は猫である。名前はまだ無い。"
NEW = 12


def _qkv(groups: int = 1) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(2, 4, 1, 32, generator=generator)
    key = torch.randn(2, 4 // groups, 128, 32, generator=generator)
    value = torch.randn(2, 4 // groups, 128, 32, generator=generator)
    mask = torch.ones(2, 1, 1, 128, dtype=torch.bool)
    return query, key, value, mask


@pytest.mark.parametrize("groups", [1, 2])
def test_op_attends_over_the_active_window_only(groups: int) -> None:
    query, key, value, mask = _qkv(groups)
    repeat = (lambda t: t.repeat_interleave(groups, dim=1)) if groups > 1 else (lambda t: t)
    full = F.scaled_dot_product_attention(query, repeat(key), repeat(value), attn_mask=mask, scale=0.125).transpose(1, 2)
    first_64 = F.scaled_dot_product_attention(query, repeat(key[:, :, :64]), repeat(value[:, :, :64]),
                                              attn_mask=mask[..., :64], scale=0.125).transpose(1, 2)
    assert torch.allclose(torch.ops.r2.windowed_sdpa(query, key, value, mask, 0.125, groups), full, atol=1e-6)
    with attention_window(64):
        windowed = torch.ops.r2.windowed_sdpa(query, key, value, mask, 0.125, groups)
    assert torch.allclose(windowed, first_64, atol=1e-6)
    assert not torch.allclose(windowed, full, atol=1e-3)  # the other 64 slots were unmasked: they did count before
    with attention_window(512):  # a window past the cache is the whole cache
        assert torch.allclose(torch.ops.r2.windowed_sdpa(query, key, value, mask, 0.125, groups), full, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2])
def test_additive_mask_gives_the_boolean_masks_attention(groups: int) -> None:
    query, key, value, _ = _qkv(groups)
    allowed = torch.rand(2, 1, 1, 128, generator=torch.Generator().manual_seed(5)) < 0.5
    allowed[..., 0] = True  # every row attends somewhere
    additive = additive_mask(allowed, query.dtype)
    assert additive.dtype == query.dtype and set(additive.unique().tolist()) == {0.0, float("-inf")}
    for window in (None, 64):
        with attention_window(window):
            from_bool = torch.ops.r2.windowed_sdpa(query, key, value, allowed, 0.125, groups)
            from_additive = torch.ops.r2.windowed_sdpa(query, key, value, additive, 0.125, groups)
        assert torch.equal(from_bool, from_additive)


def test_windows_cover_the_slots_in_use_in_steps_of_64() -> None:
    assert [window_for(n, 512) for n in (1, 64, 65, 300, 512)] == [64, 64, 128, 320, 512]
    assert window_for(700, 512) == 512 and window_for(5, 512, bucket=0) == 512
    assert windows(320) == [64, 128, 192, 256, 320] and windows(512, bucket=0) == [512]
    assert windows(100, bucket=64) == [64, 100]


def _engine() -> TransformersEngine:
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu", transformers=TransformersSettings(compile=True)))
    engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
    return engine


def _poisoned_tokens(engine: TransformersEngine, decoder: StaticDecoder) -> tuple[int, ...]:
    batch = engine.tokenizer([PROMPT], return_tensors="pt")
    width = batch["input_ids"].shape[1]
    assert width + NEW <= 64, "the test needs every step inside the first window"
    slot = decoder.prepare(1, width + NEW)
    assert slot.length == 512
    with torch.inference_mode():  # the cache tensors are inference tensors
        for layer in slot.cache.layers:
            layer.keys[:, :, 64:].fill_(float("nan"))
            layer.values[:, :, 64:].fill_(float("nan"))
    return tuple(decoder.generate(batch["input_ids"], batch["attention_mask"], NEW)[0].tolist())


def test_slots_past_the_window_are_never_read(tiny_pair) -> None:
    engine = _engine()
    expected = engine.generate([GenerationRequest("r", "p", PROMPT, NEW, seed=1)])[0].output_token_ids
    eager = TransformersEngine(EngineSettings(dtype="float32", device="cpu"))
    eager.model, eager.tokenizer = engine.model, engine.tokenizer
    assert expected == eager.generate([GenerationRequest("r", "p", PROMPT, NEW, seed=1)])[0].output_token_ids
    windowed = StaticDecoder(engine.model, eos_token_ids=engine._eos_ids())
    assert _poisoned_tokens(engine, windowed) == expected
    whole_cache = StaticDecoder(engine.model, eos_token_ids=engine._eos_ids(), window_bucket=0)
    assert _poisoned_tokens(engine, whole_cache) != expected  # NaN in masked slots still spoils full-cache SDPA
    assert engine.model.config._attn_implementation == "sdpa"  # restored after the decoder's calls


def _gqa_model() -> torch.nn.Module:
    """A small Llama-shaped model with grouped-query attention (8 heads, 2 key/value heads), random weights."""
    from artifact.architectures import architecture_dict, build_config, synthetic_model

    data = {**architecture_dict("llama-2-7b"), "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 512}
    return synthetic_model(build_config(data), "cpu", torch.float32, std=0.05)


def _step_logits(decoder: StaticDecoder, width: int, steps: int) -> torch.Tensor:
    """Logits of the prefill and of every decode step of a forced continuation (the same inputs whatever the
    attention reads), one row each."""
    generator = torch.Generator().manual_seed(width)
    vocab = int(decoder.model.config.vocab_size)
    ids = torch.randint(3, vocab, (1, width), generator=generator)
    reference = torch.randint(3, vocab, (steps,), generator=generator)
    slot = decoder.prepare(1, width + steps, forced=True)
    rows = []
    with torch.inference_mode(), decoder.scope():
        slot.reference[0, :steps].copy_(reference)
        rows.append(decoder._prefill(slot, ids, torch.ones_like(ids)).clone())
        slot.ids.copy_(slot.reference[:, :1])
        slot.cursor.fill_(1)
        for index in range(1, steps):
            decoder.advance(slot, width + index)
            rows.append(slot.logits.clone())
    return torch.cat(rows)


@pytest.mark.parametrize("width", [63, 64, 65, 127])
@pytest.mark.parametrize("model_kind", ["tiny-baseline", "gqa"])
def test_every_step_attends_to_every_written_slot(tiny_pair, model_kind: str, width: int) -> None:
    """Logits of each step with windows equal those of the model's own attention over the whole cache, for prompts
    that end just before, on and after a window boundary and steps that cross the next one. A window one slot
    short (the slot the step writes, or the prompt's last slot) moves the logits by ~1e-2 and fails this."""
    model = _engine().model if model_kind == "tiny-baseline" else _gqa_model()
    windowed = StaticDecoder(model, eos_token_ids=[2])
    whole = StaticDecoder(model, eos_token_ids=[2], window_bucket=0, pack_projections=False)  # the earlier path
    assert windowed.window_bucket == 64 and whole.window_bucket == 0
    expected = _step_logits(whole, width, 10)
    got = _step_logits(windowed, width, 10)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5), (got - expected).abs().max()


@pytest.mark.slow
def test_compiled_step_reads_the_window_at_run_time_and_compiles_once(tiny_pair, tmp_path, monkeypatch) -> None:
    """Under torch.compile the window is read when the op runs, not baked into the trace: a generation that
    crosses windows (64 -> 128 slots) compiles nothing more after the first step, and keeps eager's tokens."""
    from torch._dynamo.utils import counters

    from artifact.engines.compile_cache import CACHE_ENV

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("R2_CACHE_DIR", str(tmp_path / "cache"))
    engine = _engine()
    new = 80
    batch = engine.tokenizer([PROMPT], return_tensors="pt")
    assert batch["input_ids"].shape[1] + new > 64
    expected = engine.generate([GenerationRequest("r", "p", PROMPT, new, seed=1)])[0].output_token_ids
    torch._dynamo.reset()
    counters.clear()
    decoder = StaticDecoder(engine.model, eos_token_ids=engine._eos_ids(), inductor=True)
    decoder.prepare(1, batch["input_ids"].shape[1] + new)
    compiled = counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"]
    assert compiled >= 1
    assert tuple(decoder.generate(batch["input_ids"], batch["attention_mask"], new)[0].tolist()) == expected
    assert counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"] == compiled


def test_attention_window_is_a_config_setting_recorded_by_the_engine(tmp_path: Path) -> None:
    from artifact.config import load_config
    from artifact.errors import ConfigError

    source = (Path(__file__).parents[1] / "artifact" / "configs" / "smoke.toml").read_text()
    assert "[engine.transformers]" not in source
    config = tmp_path / "c.toml"
    config.write_text(source)
    assert load_config(config).engine.transformers.attention_window == 64
    config.write_text(source + "\n[engine.transformers]\nattention_window = 0\n")
    assert load_config(config).engine.transformers.attention_window == 0
    for wrong in ("-8", "48"):
        config.write_text(source + f"\n[engine.transformers]\nattention_window = {wrong}\n")
        with pytest.raises(ConfigError, match="attention_window"):
            load_config(config)
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu",
                                               transformers=TransformersSettings(compile=True, attention_window=0)))
    assert engine.describe()["static_decode_attention"] == "reads every slot of the static cache"


def test_a_model_without_sdpa_keeps_its_own_attention(tiny_pair) -> None:
    """The op is SDPA on a slice: a model loaded with eager attention is not switched (no windows), and the engine
    says so."""
    engine = _engine()
    engine.model.set_attn_implementation("eager")
    decoder = StaticDecoder(engine.model, eos_token_ids=engine._eos_ids())
    assert decoder.window_bucket == 0
    batch = engine.tokenizer([PROMPT], return_tensors="pt")
    decoder.generate(batch["input_ids"], batch["attention_mask"], NEW)
    assert engine.model.config._attn_implementation == "eager"
    assert engine.describe()["static_decode_attention"] == "reads every slot of the static cache"
