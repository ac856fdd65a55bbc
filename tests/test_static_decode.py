"""The fast decode path (engine.transformers.compile = true) on the CPU: forced length, same greedy tokens as
eager generate(), batch 1 and a left-padded batch, on the real tiny pair."""

from __future__ import annotations

import pytest

from artifact.config import EngineSettings, ModelSpec, TransformersSettings
from artifact.engines.base import GenerationRequest
from artifact.engines.hf import TransformersEngine
from artifact.models import resolve_model

PROMPTS = ["吾輩は猫である。名前はまだ無い。", "The quick brown fox", "こんにちは"]
NEW = 12


def _outputs(builtin: str, compile_: bool) -> tuple[list, list, TransformersEngine]:
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu",
                                               transformers=TransformersSettings(compile=compile_)))
    engine.load(resolve_model(ModelSpec(name=builtin, role="candidate", builtin=builtin)))
    requests = [GenerationRequest(f"r{i}", f"p{i}", prompt, NEW, seed=5) for i, prompt in enumerate(PROMPTS)]
    single = [engine.generate([request])[0] for request in requests]
    batched = engine.generate(requests)
    return single, batched, engine


@pytest.mark.parametrize("builtin", ["tiny-baseline", "tiny-expanded"])
def test_static_path_matches_eager_generate(tiny_pair, builtin: str) -> None:
    eager_single, eager_batch, _ = _outputs(builtin, False)
    fast_single, fast_batch, engine = _outputs(builtin, True)
    assert engine.decoder is not None
    for outputs in (fast_single, fast_batch):
        assert all(len(output.output_token_ids) == NEW for output in outputs)
        assert all(output.first_token_s is not None and output.first_token_s <= output.finished_s for output in outputs)
    assert [o.output_token_ids for o in fast_single] == [o.output_token_ids for o in eager_single]
    assert [o.output_token_ids for o in fast_batch] == [o.output_token_ids for o in eager_batch]
    assert [o.prompt_tokens for o in fast_batch] == [o.prompt_tokens for o in eager_batch]
    assert engine.describe()["generation"].startswith("static decode")


def test_static_path_seeded_sampling_is_reproducible(tiny_pair) -> None:
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu", transformers=TransformersSettings(compile=True)))
    engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
    request = GenerationRequest("r", "p", PROMPTS[0], NEW, seed=11, temperature=0.8)
    first, second = engine.generate([request])[0], engine.generate([request])[0]
    assert first.output_token_ids == second.output_token_ids and len(first.output_token_ids) == NEW


def test_cache_length_is_tight_for_batches_and_shared_at_batch_one(tiny_pair) -> None:
    """Every cache slot is read at every step for every row: a batch gets prompt + new tokens rounded up to 64,
    batch 1 keeps its floor of 512 so every prompt of a run shares one compiled step."""
    from artifact.engines.static_decode import MIN_CACHE_LEN, bucket_length

    _, _, engine = _outputs("tiny-baseline", True)
    lengths = {(event["batch"], event["cache_len"]) for event in engine.decoder.events}
    assert lengths == {(1, MIN_CACHE_LEN), (len(PROMPTS), 64)}  # CPU: no batch padding; 3 rows x (width + 12) <= 64
    assert bucket_length(600, 1) == 640 and bucket_length(321, 32) == 384 and bucket_length(320, 32) == 320


def test_described_decode_captures_fill_after_load(tiny_pair) -> None:
    """The model record is taken at load, before the warm-up compiles and captures; its decode_captures is the
    decoder's own list, so what models.json stores after the warm-up lists every captured step with its seconds
    (the report's per-model warm-up line reads it)."""
    from artifact.cost import warmup_by_model

    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu", transformers=TransformersSettings(compile=True)))
    info = engine.load(resolve_model(ModelSpec(name="t", role="candidate", builtin="tiny-baseline")))
    assert info.settings["decode_captures"] == []
    engine.generate([GenerationRequest("r", "p", PROMPTS[0], NEW, seed=5)])
    engine.generate([GenerationRequest(f"r{i}", f"p{i}", prompt, NEW, seed=5) for i, prompt in enumerate(PROMPTS)])
    captures = info.settings["decode_captures"]
    assert [(event["batch"], event["cache_len"]) for event in captures] == [(1, 512), (len(PROMPTS), 64)]
    rows = warmup_by_model([{"phase": "warmup", "seconds": 2.5, "model": "t"}, {"phase": "measure", "seconds": 9.0, "model": "t"}],
                           {"t": {"settings": info.settings}})
    assert rows[0]["decode_steps"] == 2 and rows[0]["seconds"] == 2.5
    assert rows[0]["compile_capture_s"] == pytest.approx(sum(event["seconds"] for event in captures), abs=0.002)
