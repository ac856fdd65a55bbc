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


def test_project_cache_wins_over_torchs_own_default(tmp_path: Path, monkeypatch) -> None:
    """torch writes its /tmp default into TORCHINDUCTOR_CACHE_DIR at its first cache lookup; that must not be
    mistaken for the user's choice (the H100 run's kernels went to /tmp/torchinductor_root that way)."""
    import artifact
    from torch._inductor.runtime.cache_dir_utils import cache_dir as torch_cache_dir

    monkeypatch.setattr(artifact, "USER_INDUCTOR_CACHE_DIR", None)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("R2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    torch_default = torch_cache_dir()  # what torch does on its own before the engine loads
    assert os.environ[CACHE_ENV] == torch_default
    record = configure_compile_cache()
    assert record["inductor_cache_source"] == "project cache"
    assert os.environ[CACHE_ENV] == record["inductor_cache_dir"] == str(tmp_path / "cache" / "torchinductor")
    assert torch_cache_dir() == record["inductor_cache_dir"]  # torch's next lookup follows
    assert configure_compile_cache()["inductor_cache_source"] == "project cache"  # a second load says the same


def test_users_own_cache_folder_is_kept(tmp_path: Path, monkeypatch) -> None:
    import artifact

    chosen = tmp_path / "mine"
    monkeypatch.setattr(artifact, "USER_INDUCTOR_CACHE_DIR", str(chosen))
    monkeypatch.setenv(CACHE_ENV, "/tmp/torchinductor_someone")
    record = configure_compile_cache()
    assert record == {"inductor_cache_dir": str(chosen), "inductor_cache_source": "environment",
                      "inductor_cache_files_at_start": 0}
    assert os.environ[CACHE_ENV] == str(chosen)


_SECOND_PROCESS = """
import json, sys
import torch
from torch._dynamo.utils import counters
from artifact.config import EngineSettings, ModelSpec
from artifact.engines.compile_cache import configure_compile_cache
from artifact.engines.hf import TransformersEngine
from artifact.engines.static_decode import StaticDecoder
from artifact.models import resolve_model

record = configure_compile_cache()
engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu"))
engine.load(resolve_model(ModelSpec(name="tiny-baseline", role="candidate", builtin="tiny-baseline")))
batch = engine.tokenizer(["吾輩は猫である。名前はまだ無い。"], return_tensors="pt")
decoder = StaticDecoder(engine.model, eos_token_ids=engine._eos_ids(), inductor=True)
tokens = decoder.generate(batch["input_ids"], batch["attention_mask"], 6)[0].tolist()
print(json.dumps({"tokens": tokens, "hit": counters["inductor"]["fxgraph_cache_hit"],
                  "miss": counters["inductor"]["fxgraph_cache_miss"], **record}))
"""


@pytest.mark.slow
def test_a_second_run_reuses_the_first_runs_compiled_step(tiny_pair, tmp_path: Path) -> None:
    """Compile once across runs: a second process (a second `artifact run`) finds the compiled decode step in the
    project cache and compiles nothing, with the same tokens. Real inductor (C++ kernels on the CPU), two processes."""
    import json
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != CACHE_ENV}
    env.update(R2_CACHE_DIR=os.environ["R2_CACHE_DIR"], HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    # Both runs share one inductor cache in a fresh folder, so the first one is cold whatever ran before.
    env["R2_CACHE_DIR"] = str(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    tiny_source = Path(os.environ["R2_CACHE_DIR"])
    for entry in tiny_source.iterdir():  # the built tiny pair, not rebuilt: link it into the fresh cache
        if entry.name != "torchinductor":
            (tmp_path / "cache" / entry.name).symlink_to(entry)

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", _SECOND_PROCESS], env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["inductor_cache_files_at_start"] == 0 and first["miss"] >= 1, first
    assert second["inductor_cache_files_at_start"] > 0
    assert second["miss"] == 0 and second["hit"] >= 1, second
    assert second["tokens"] == first["tokens"] and len(first["tokens"]) == 6
