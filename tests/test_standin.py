"""The stand-in Swallow tokenizer: exact size, Llama 2 kept as its first 32,000 pieces, faithful loading,
deterministic builds, validated names, and a label on every report made with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2
from typer.testing import CliRunner

from artifact.architectures import architecture_dict
from artifact.cli import app
from artifact.config import load_config
from artifact.corpora import load_corpus
from artifact.errors import ConfigError
from artifact.standin import STANDINS, ensure_standin, named_source_problem
from artifact.tiny import _JAPANESE_PIECE
from artifact.tokenization import count_tokens, load_tokenizer
from conftest import write_tiny_config
from test_tokenization import assert_same_ids, sample_texts

runner = CliRunner()
SWALLOW_VOCAB = 43_176
LLAMA_VOCAB = 32_000


def pieces(model_file: Path) -> list[model_pb2.ModelProto.SentencePiece]:
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    return list(proto.pieces)


@pytest.fixture(scope="module")
def standin(mirror: Path) -> Path:
    return ensure_standin("swallow-7b", mirror=mirror) / "tokenizer.model"


@pytest.fixture(scope="module")
def llama_model(mirror: Path) -> Path:
    return mirror / "tokenizers" / "llama-2" / "tokenizer.model"


def test_vocabulary_is_llama2_then_japanese_pieces_to_swallow_size(standin: Path, llama_model: Path) -> None:
    built, llama = pieces(standin), pieces(llama_model)
    assert len(built) == SWALLOW_VOCAB == STANDINS["swallow-7b"].vocab_size
    assert len(llama) == LLAMA_VOCAB
    assert [(p.piece, p.score, p.type) for p in built[:LLAMA_VOCAB]] == [(p.piece, p.score, p.type) for p in llama]
    appended = built[LLAMA_VOCAB:]
    known = {p.piece for p in llama}
    texts = [p.piece for p in appended]
    assert len(set(texts)) == len(texts) and not known & set(texts)
    assert all(_JAPANESE_PIECE.match(text) for text in texts)
    vocabulary = known | set(texts)
    assert all(char in vocabulary for text in texts for char in text)  # every merged piece is reachable
    scores = [p.score for p in appended]
    assert max(scores) < min(p.score for p in llama) and scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)  # no ties: SentencePiece and our loader would break them differently
    build = json.loads((standin.parent / "build.json").read_text())
    parts = build["appended"]
    assert parts["bpe_pieces_kept"] + parts["single_characters"] + parts["padding_cjk_in_code_point_order"] == 11_176
    assert build["tokenizer_standin"] is True and "not" in build["description"]


def test_ids_match_sentencepiece_through_the_project_loader(standin: Path, mirror: Path) -> None:
    tokenizer = load_tokenizer("standin:swallow-7b", mirror=mirror)
    assert len(tokenizer) == SWALLOW_VOCAB
    processor = spm.SentencePieceProcessor(model_file=str(standin))
    texts = sample_texts(mirror) + [d.text for d in load_corpus("wagahai", mirror=mirror)[:200]]
    assert_same_ids(tokenizer, processor, texts)


def test_shortens_japanese_and_leaves_english_alone(mirror: Path) -> None:
    standin = load_tokenizer("standin:swallow-7b", mirror=mirror)
    llama = load_tokenizer("data:llama-2-tokenizer", mirror=mirror)
    assert len(llama) == LLAMA_VOCAB
    japanese = [d.text for d in load_corpus("jsquad", mirror=mirror)[:200]]
    english = [d.text for d in load_corpus("botchan", mirror=mirror)[:200]]
    assert sum(count_tokens(standin, japanese)) < 0.8 * sum(count_tokens(llama, japanese))
    assert count_tokens(standin, english) == count_tokens(llama, english)


def test_rebuild_is_byte_identical(tmp_path: Path, mirror: Path, standin: Path) -> None:
    first = ensure_standin("swallow-7b", mirror=mirror, root=tmp_path / "a")
    second = ensure_standin("swallow-7b", mirror=mirror, root=tmp_path / "b")
    for name in ("tokenizer.model", "build.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes() == (standin.parent / name).read_bytes()
    assert first.name == second.name == standin.parent.name  # the cache key does not depend on where it lives


def test_names_are_validated_with_the_valid_ones_listed(tmp_path: Path) -> None:
    assert named_source_problem("standin:swallow-7b") is None
    assert named_source_problem("data:llama-2-tokenizer") is None
    assert "standin:swallow-7b" in named_source_problem("standin:swallow-8b")
    assert "data:llama-2-tokenizer" in named_source_problem("data:jsquad-v1.3-valid")  # not a tokenizer file
    config = write_tiny_config(tmp_path / "bad.toml", "bad", """
[[models]]
name = "a"
role = "candidate"
builtin = "tiny-expanded"
tokenizer = "standin:swallow-70"
[[models]]
name = "b"
role = "baseline"
builtin = "tiny-baseline"
""")
    with pytest.raises(ConfigError, match=r"models\[0\].*tokenizer.*valid: standin:swallow-7b"):
        load_config(str(config))
    result = runner.invoke(app, ["tokens", "--tokenizer", "x=standin:nope", "--corpus", "prompts"])
    assert result.exit_code == 2 and "standin:swallow-7b" in result.output and "Traceback" not in result.output


def test_shipped_standin_config_differs_from_the_synthetic_one_only_in_tokenizers() -> None:
    standin = load_config("r2-swallow-7b-synthetic-standin").to_dict()
    original = load_config("r2-swallow-7b-synthetic").to_dict()
    tokenizers = {model["name"]: model.pop("tokenizer") for model in standin["models"]}
    assert tokenizers == {"swallow-7b": "standin:swallow-7b", "swallow-7b-nve": "data:llama-2-tokenizer",
                          "llama-2-7b": "data:llama-2-tokenizer"}
    for model in original["models"]:
        assert model.pop("tokenizer") is None
    for key in ("name", "description", "source"):
        standin.pop(key), original.pop(key)
    assert standin == original


def tiny_synthetic(tmp_path: Path, name: str, vocab: int) -> Path:
    data = {**architecture_dict("swallow-7b"), "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": vocab}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_run_with_the_standin_says_so_first_and_stores_its_provenance(tmp_path: Path, mirror: Path) -> None:
    candidate, baseline = tiny_synthetic(tmp_path, "swallow", SWALLOW_VOCAB), tiny_synthetic(tmp_path, "nve", LLAMA_VOCAB)
    config = write_tiny_config(tmp_path / "standin-run.toml", "standin-run", f"""
[[models]]
name = "swallow-tiny"
role = "candidate"
repo = "tokyotech-llm/Swallow-7b-hf"
revision = "944e2a0b45a665a3afeaf138117f5c242fafc1bd"
weights = "synthetic"
architecture = "{candidate}"
tokenizer = "standin:swallow-7b"
[[models]]
name = "nve-tiny"
role = "baseline"
repo = "tokyotech-llm/Swallow-7b-NVE-hf"
revision = "69741833b75b81ecd3d6e3359ef3523c49da259e"
weights = "synthetic"
architecture = "{baseline}"
tokenizer = "data:llama-2-tokenizer"
""")
    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs"), "--data-mirror", str(mirror)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    tokenizers = json.loads((run_dir / "tokens.json").read_text())["summary"]["tokenizers"]
    assert tokenizers["swallow-tiny"]["tokenizer_standin"] is True
    assert tokenizers["swallow-tiny"]["standin"]["build"]["vocab_size"] == SWALLOW_VOCAB
    assert tokenizers["nve-tiny"]["tokenizer_standin"] is False
    results = json.loads((run_dir / "results.json").read_text())
    assert results["token_efficiency"]["tokenizers"]["swallow-tiny"]["tokenizer_standin"] is True
    first_line = (run_dir / "report.md").read_text().splitlines()[0]
    assert first_line.startswith("> **STAND-IN TOKENIZER") and "`standin:swallow-7b`" in first_line
    tex = (run_dir / "report.tex").read_text()
    assert tex.index("\\maketitle") < tex.index("STAND-IN TOKENIZER") < tex.index("\\textbf{GPU:}")
    if shutil.which("pdflatex") or shutil.which("lualatex"):
        assert (run_dir / "report.pdf").is_file(), (run_dir / "report.pdf.log").read_text()
    models = json.loads((run_dir / "models.json").read_text())
    assert models["swallow-tiny"]["vocab_size"] == SWALLOW_VOCAB and models["nve-tiny"]["vocab_size"] == LLAMA_VOCAB
    (run_dir / "report.md").unlink()  # a re-render from the stored files alone keeps the label
    assert runner.invoke(app, ["report", str(run_dir)]).exit_code == 0
    assert (run_dir / "report.md").read_text().startswith("> **STAND-IN TOKENIZER")


def test_reports_without_a_standin_carry_no_label() -> None:
    from artifact.standin import standins_in_results

    plain = {"config": {"models": [{"name": "a", "tokenizer": None}, {"name": "b", "tokenizer": "data:llama-2-tokenizer"}]},
             "token_efficiency": {"tokenizers": {"a": {"source": "x", "tokenizer_standin": False}}}}
    assert standins_in_results(plain) == []
    assert standins_in_results({}) == []
    # A run whose token stage recorded nothing is still labelled from its config.
    config_only = {"config": {"models": [{"name": "a", "tokenizer": "standin:swallow-7b"}]}, "token_efficiency": None}
    (label,) = standins_in_results(config_only)
    assert label["model"] == "a" and label["description"].startswith("STAND-IN, not tokyotech-llm/Swallow-7b-hf")


def test_a_standin_given_by_path_is_labelled_too(standin: Path, tmp_path: Path) -> None:
    from artifact.standin import provenance

    for source in ("standin:swallow-7b", str(standin), str(standin.parent)):
        found = provenance(source)
        assert found["tokenizer_standin"] is True and found["standin"]["build"]["vocab_size"] == SWALLOW_VOCAB
    (tmp_path / "tokenizer.model").write_bytes(b"")
    assert provenance(str(tmp_path)) == provenance("data:llama-2-tokenizer") == {"tokenizer_standin": False}
