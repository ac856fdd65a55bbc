"""The tokenizer-efficiency stage on real tokenizers: the tiny pair, and Llama 2 from the data mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm
from typer.testing import CliRunner

from artifact.cli import app
from artifact.claims import get_claim
from artifact.config import load_config
from artifact.corpora import load_corpus
from artifact.measure.tokens import measure_config_tokens

from conftest import write_tiny_config

runner = CliRunner()


def test_smoke_token_stage_counts_and_ratio(tiny_pair) -> None:
    config = load_config("smoke")
    measured = measure_config_tokens(config, get_claim("R-2"))
    (corpus,) = measured["summary"]["corpora"]
    assert corpus["corpus"] == "prompts" and corpus["role"] == "reference" and corpus["documents"] == 30
    counts = measured["per_document"]["prompts"]
    assert sum(counts["chars"]) == corpus["chars"]
    for model, values in corpus["models"].items():
        assert values["tokens"] == sum(counts["tokens"][model])
        assert values["tokens_per_1000_chars"] == pytest.approx(1000 * values["tokens"] / corpus["chars"])
        assert values["tokens_per_1000_bytes"] == pytest.approx(1000 * values["tokens"] / corpus["utf8_bytes"])
    ratio = corpus["token_length_ratio"]["tiny-baseline"]
    expected = sum(counts["tokens"]["tiny-expanded"]) / sum(counts["tokens"]["tiny-baseline"])
    assert ratio["estimate"] == pytest.approx(expected)
    assert ratio["low"] <= ratio["estimate"] <= ratio["high"] < 1
    assert ratio["contains_reference"] is (ratio["low"] <= 0.562 <= ratio["high"])


def test_llama2_counts_match_sentencepiece_on_jsquad(tmp_path: Path, mirror: Path) -> None:
    llama2 = mirror / "tokenizers" / "llama-2" / "tokenizer.model"
    output = tmp_path / "tokens.json"
    result = runner.invoke(app, ["tokens", "--tokenizer", f"llama-2={llama2}", "--corpus", "jsquad", "--corpus", "botchan",
                                 "--data-mirror", str(mirror), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "tokens/1000 chars" in result.output
    measured = json.loads(output.read_text())
    reference = spm.SentencePieceProcessor(model_file=str(llama2))
    documents = load_corpus("jsquad", mirror=mirror)
    assert len(documents) == 1145
    expected = [len(reference.encode(document.text)) for document in documents]
    assert measured["per_document"]["jsquad"]["tokens"]["llama-2"] == expected
    jsquad, botchan = measured["summary"]["corpora"]
    # Llama 2 spends more than one token per Japanese character, about a quarter per English character.
    assert jsquad["models"]["llama-2"]["tokens_per_1000_chars"] > 1000
    assert botchan["role"] == "control" and botchan["models"]["llama-2"]["tokens_per_1000_chars"] < 400


def test_tokens_command_errors_are_clean() -> None:
    result = runner.invoke(app, ["tokens"])
    assert result.exit_code == 2 and "--tokenizer" in result.output
    result = runner.invoke(app, ["tokens", "--tokenizer", "x=/nonexistent/tokenizer.model", "--corpus", "jsqad"])
    assert result.exit_code == 2 and "--corpus 'jsqad': unknown" in result.output
    result = runner.invoke(app, ["tokens", "smoke", "--tokenizer", "nobody=/x"])
    assert result.exit_code == 2 and "no model named" in result.output


def test_same_tokenizer_twice_is_flagged_in_the_report(tmp_path: Path, tiny_pair) -> None:
    config = write_tiny_config(tmp_path / "same-tokenizer.toml", "same-tokenizer", f"""
[[models]]
name = "expanded-with-base-tokenizer"
role = "candidate"
builtin = "tiny-expanded"
tokenizer = "{tiny_pair.baseline}"
[[models]]
name = "tiny-baseline"
role = "baseline"
builtin = "tiny-baseline"
[reference_texts]
corpus = "tiny_ja"
documents = 2
target_chars = 15
min_chars = 8
max_chars = 25
""")
    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs"),
                                 "--set", 'trials.modes=["fixed_text", "latency"]'])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "results.json").read_text())["token_efficiency"]
    assert summary["corpora"][0]["token_length_ratio"]["tiny-baseline"]["identical_counts"] is True
    report = (run_dir / "report.md").read_text()
    assert "they are the same tokenizer" in report
    # The verdict is measured on fixed text, so it stands (a ratio near 1: equal tokens); a projection would not.
    verdict = json.loads((run_dir / "results.json").read_text())["comparisons"][0]["verdict"]
    assert verdict["basis"] == "measured, fixed text" and verdict["outcome"] != "NOT MEASURED"
