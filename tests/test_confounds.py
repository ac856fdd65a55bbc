"""Confound checks on real configurations (meta device) and end to end with a tiny GPT-2 baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig
from typer.testing import CliRunner

from artifact.claims import verdict as verdict_rule
from artifact.cli import app
from artifact.confounds import architecture_facts, compare
from artifact.engines.base import ModelHandle
from conftest import write_tiny_config

runner = CliRunner()
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, max_position_embeddings=4096, tie_word_embeddings=False)


def facts(name: str, config):
    return architecture_facts(ModelHandle(name, "baseline", name, None, True, name), config)


def test_swallow_vs_nve_differs_only_in_vocabulary() -> None:
    swallow = facts("swallow-7b", LlamaConfig(vocab_size=43176, architectures=["LlamaForCausalLM"], **LLAMA_7B))
    nve = facts("swallow-7b-nve", LlamaConfig(vocab_size=32000, architectures=["LlamaForCausalLM"], **LLAMA_7B))
    found = compare(swallow, nve)
    assert not found["confounded"]
    assert found["differences"] == []
    assert swallow.parameter_count - nve.parameter_count == 2 * 11176 * 4096
    assert found["parameter_gap_total"] == pytest.approx(2 * 11176 * 4096 / swallow.parameter_count)
    assert found["parameter_gap_outside_embeddings"] == 0


def test_dialogpt_large_is_a_confounded_baseline() -> None:
    swallow = facts("swallow-7b", LlamaConfig(vocab_size=43176, architectures=["LlamaForCausalLM"], **LLAMA_7B))
    dialogpt = facts("dialogpt-large", GPT2Config(n_embd=1280, n_layer=36, n_head=20, vocab_size=50257,
                                                   n_positions=1024, architectures=["GPT2LMHeadModel"]))
    found = compare(swallow, dialogpt)
    assert found["confounded"]
    assert 7.6e8 < dialogpt.parameter_count < 7.9e8  # ~774M
    text = found["summary"]
    assert "architecture GPT2LMHeadModel" in text and "layers 36" in text and "parameters outside the embeddings" in text


@pytest.fixture(scope="module")
def gpt2_baseline(tmp_path_factory: pytest.TempPathFactory, tiny_pair) -> Path:
    """A tiny GPT-2-shaped model (3 layers, head size 32) that uses the tiny baseline tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = json.loads((tiny_pair.baseline / "config.json").read_text())["vocab_size"]
    config = GPT2Config(n_embd=64, n_layer=3, n_head=2, n_positions=512, vocab_size=vocab, bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def confounded_config(tmp_path: Path, gpt2: Path, tiny_pair) -> Path:
    return write_tiny_config(tmp_path / "original-plan-tiny.toml", "original-plan-tiny", f"""
[[models]]
name = "tiny-expanded"
role = "candidate"
builtin = "tiny-expanded"
[[models]]
name = "tiny-gpt2"
role = "baseline"
path = "{gpt2}"
tokenizer = "{tiny_pair.baseline}"
""")


def test_gpt2_baseline_run_is_confounded_unless_overridden(tmp_path: Path, gpt2_baseline: Path, tiny_pair) -> None:
    config = confounded_config(tmp_path, gpt2_baseline, tiny_pair)
    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "confounded baseline" in result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    (comparison,) = results["comparisons"]
    assert comparison["verdict"]["outcome"] == "CONFOUNDED"
    ratio = comparison["verdict"]["ratio"]
    if ratio is not None:  # the claim's verdict mode may not be among this tiny config's modes
        assert comparison["verdict"]["statistical_outcome"] == verdict_rule(ratio["low"], ratio["high"], 1.70)
    assert results["summary"]["validation_status"] == "CONFOUNDED (smoke)"  # a smoke-marked tiny config
    assert results["summary"]["combined_verdict"] == "CONFOUNDED"
    report = (run_dir / "report.md").read_text()
    assert "## Confounds" in report and "**CONFOUNDED** — architecture GPT2LMHeadModel" in report

    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "override"), "--allow-confounded"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "override").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    verdict = results["comparisons"][0]["verdict"]
    # Judged (here NOT MEASURED or INSUFFICIENT: a latency-only tiny run of 3 prompts), and the override stays visible.
    assert verdict["outcome"] in ("NOT MEASURED", "INSUFFICIENT") and "confounded; override" in verdict["display"]
    assert "Override given (`--allow-confounded`)" in (run_dir / "report.md").read_text()


def test_original_plan_config_names_dialogpt() -> None:
    from artifact.config import load_config

    config = load_config("r2-original-plan")
    assert [model.repo for model in config.baselines] == ["microsoft/DialoGPT-large"]
