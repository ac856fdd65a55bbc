"""No silent gaps: when vLLM returns no per-request metrics, first-token times are measured on our own clock.

vLLM before 0.11.1 never fills `RequestOutput.metrics` in its V1 engine; every vLLM leaves it empty with its
stats off. The second case is a real vLLM configuration, so the fallback runs here on the real engine (the
vLLM virtual environment; `make test-vllm` runs these and fails on a skip).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")

from artifact.config import EngineSettings, VLLMSettings  # noqa: E402
from artifact.engines.base import GenerationRequest, ModelHandle  # noqa: E402

pytestmark = pytest.mark.vllm
NEW_TOKENS = 9


@pytest.fixture(scope="module")
def vllm_ready() -> None:
    try:
        import vllm  # noqa: F401
    except Exception as error:  # noqa: BLE001 - a broken wheel raises RuntimeError, not ImportError
        message = f"vLLM cannot be imported here ({type(error).__name__}: {error}); run `make test-vllm`"
        if os.environ.get("R2_REQUIRE_VLLM") == "1":
            pytest.fail(f"R2_REQUIRE_VLLM=1 but {message}")
        pytest.skip(message)


def _engine(stats: bool) -> Any:
    from artifact.engines.vllm import VLLMEngine

    class StatsOffEngine(VLLMEngine):
        """vLLM with its per-request stats off: RequestOutput.metrics is None, as before vLLM 0.11.1."""

        def _llm_kwargs(self, model: ModelHandle, where: str, max_model_len: int) -> dict[str, Any]:
            return {**super()._llm_kwargs(model, where, max_model_len), "disable_log_stats": True}

    settings = EngineSettings(name="vllm", dtype="float32", device="cpu", vllm=VLLMSettings(enforce_eager=True))
    return (VLLMEngine if stats else StatsOffEngine)(settings)


def _handle(folder: Path) -> ModelHandle:
    return ModelHandle("tiny-expanded", "candidate", str(folder), None, False, str(folder), folder)


def _requests(count: int) -> list[GenerationRequest]:
    prompts = ["吾輩は猫である。", "名前はまだ無い。", "どこで生れたかとんと見当がつかぬ。"]
    return [GenerationRequest(f"r{index}", f"p{index}", prompts[index % 3], NEW_TOKENS, seed=7 + index)
            for index in range(count)]


def test_without_vllm_metrics_first_token_time_comes_from_our_clock(vllm_ready, tiny_pair) -> None:
    from artifact.engines.vllm import FRONTEND_CLOCK

    engine = _engine(stats=False)
    try:
        info = engine.load(_handle(tiny_pair.expanded))
        # Said in the run record (report: the models table's notes; CLI: the pipeline prints measurement gaps).
        assert info.settings["first_token_time"] == FRONTEND_CLOCK
        assert any("returned no per-request metrics" in note and "LLMEngine.step()" in note for note in info.notes)
        assert info.settings["measurement_gaps"] == [note for note in info.notes if "per-request metrics" in note]
        for batch in (_requests(1), _requests(3)):  # latency (batch 1) and throughput
            outputs = engine.generate(batch)
            assert [output.request_id for output in outputs] == [request.request_id for request in batch]
            for request, output in zip(batch, outputs, strict=True):
                assert output.error is None and len(output.output_token_ids) == NEW_TOKENS
                assert output.first_token_s is not None and output.finished_s is not None
                assert 0 < output.first_token_s < output.finished_s
                assert output.prompt_tokens == len(engine.encode(request.prompt))
    finally:
        engine.close()


def test_both_clocks_give_the_same_tokens(vllm_ready, tiny_pair) -> None:
    """The stepwise loop serves the same greedy generation as LLM.generate: only where the times come from differs."""
    from artifact.engines.vllm import ENGINE_TIMESTAMPS

    outputs = {}
    for stats in (True, False):
        engine = _engine(stats=stats)
        try:
            info = engine.load(_handle(tiny_pair.expanded))
            if stats:
                assert info.settings["first_token_time"] == ENGINE_TIMESTAMPS
                assert "measurement_gaps" not in info.settings
            outputs[stats] = [output.output_token_ids for output in engine.generate(_requests(3))]
        finally:
            engine.close()
    assert outputs[True] == outputs[False]
