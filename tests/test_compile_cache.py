"""Compile once (issue 14): the inductor-compiled, tuned decode step keeps eager generate()'s greedy tokens, its
kernels land in the project's cache folder, and a second model of the same shape is served from that cache.
Runs inductor for real on the CPU (C++ kernels), so it is marked slow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from artifact.config import EngineSettings, ModelSpec
from artifact.engines.compile_cache import CACHE_ENV, configure_compile_cache, inductor_options
from artifact.engines.hf import TransformersEngine
from artifact.engines.static_decode import StaticDecoder
from artifact.models import resolve_model

NEW = 6


def _eager_engine(builtin: str) -> TransformersEngine:
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu"))
    engine.load(resolve_model(ModelSpec(name=builtin, role="candidate", builtin=builtin)))
    return engine


@pytest.mark.slow
def test_tuned_compiled_step_matches_eager_and_is_compiled_once(tiny_pair, tmp_path: Path, monkeypatch) -> None:
    from torch._dynamo.utils import counters

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("R2_CACHE_DIR", str(tmp_path / "cache"))
    record = configure_compile_cache()
    assert record["inductor_cache_dir"] == str(tmp_path / "cache" / "torchinductor")
    assert os.environ[CACHE_ENV] == record["inductor_cache_dir"]
    engine = _eager_engine("tiny-baseline")
    batch = engine.tokenizer(["吾輩は猫である。名前はまだ無い。"], return_tensors="pt")
    counters.clear()
    torch._dynamo.reset()
    first = StaticDecoder(engine.model, eos_token_ids=engine._eos_ids(), inductor=True, tuning="coordinate-descent")
    tokens = first.generate(batch["input_ids"], batch["attention_mask"], NEW)[0].tolist()
    assert tuple(tokens) == engine.generate([_request()])[0].output_token_ids
    # The generated kernels and the FX graph are written to the project's cache (persistent across runs).
    assert any(Path(record["inductor_cache_dir"]).rglob("*.py")), "compiled kernels were not written to the project cache"
    compiled = counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"]
    assert compiled >= 1
    # A second, separately loaded model of the same shape with different weights: no new compile, and its own
    # weights are used (weights are graph inputs, not constants baked into the kernels).
    twin = _eager_engine("tiny-baseline")
    with torch.no_grad():
        for parameter in twin.model.parameters():
            parameter.mul_(-1.5)
    expected = twin.generate([_request()])[0].output_token_ids
    assert expected != tuple(tokens), "the perturbed twin should generate other tokens"
    second = StaticDecoder(twin.model, eos_token_ids=twin._eos_ids(), inductor=True, tuning="coordinate-descent")
    assert tuple(second.generate(batch["input_ids"], batch["attention_mask"], NEW)[0].tolist()) == expected
    assert counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"] == compiled


def _request():
    from artifact.engines.base import GenerationRequest

    return GenerationRequest("r", "p", "吾輩は猫である。名前はまだ無い。", NEW, seed=1)


def test_tuning_choices_map_to_inductor_options() -> None:
    assert inductor_options("default") == {}
    assert inductor_options("coordinate-descent") == {"coordinate_descent_tuning": True}
    assert inductor_options("max-autotune")["max_autotune"] is True
    assert inductor_options("max-autotune-gemm") == {"max_autotune_gemm": True, "triton.cudagraphs": False}


def test_every_tuning_is_a_valid_config_choice_and_nothing_else() -> None:
    """Config validation and the engine read one list: each choice loads, an unknown one is refused by name."""
    from artifact.config import load_config
    from artifact.errors import ConfigError
    from artifact.tunings import TUNINGS

    for tuning in TUNINGS:
        assert load_config("smoke", {"engine.transformers.tuning": tuning}).engine.transformers.tuning == tuning
    with pytest.raises(ConfigError, match="max-autotune-gemm"):
        load_config("smoke", {"engine.transformers.tuning": "fastest"})
