"""Fixed-text timing: every model emits exactly the reference text, in its own tokenization, with the token counts
the tokenizer stage reports; a difference is an error. Real tokenizers (tiny pair, Llama 2), real tiny models."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from tokenizers import normalizers

from artifact.config import EngineSettings, ModelSpec, ReferenceTextSettings, TransformersSettings
from artifact.corpora import Document, load_corpus
from artifact.engines.base import GenerationOutput, GenerationRequest
from artifact.engines.hf import TransformersEngine
from artifact.measure.tokens import TokenizerSource, count_corpora
from artifact.measure.trials import FIXED_TEXT_MISMATCH, fixed_text_error, japanese_chars
from artifact.models import resolve_model
from artifact.reference_texts import (cut_text, describe_reference_texts, select_reference_texts, sentence_ends,
                                      writable_verbatim)
from artifact.tokenization import load_tokenizer, text_token_ids

PROMPT = "次の文章を書いてください。"
# Text that starts mid-word (English and Japanese) and characters outside the tiny baseline's and Llama 2's
# pieces (rare kanji, a supplementary-plane kanji, an emoji): those go through byte fallback.
HARD_TEXTS = [
    "ello world, said the fox.",
    "んにちは、世界。今日は良い天気です。",
    "魑魅魍魎が跋扈する𠮷野家で😀を見た。",
]
BUILTINS = ["tiny-baseline", "tiny-expanded"]


def _engine(builtin: str, compile_: bool) -> TransformersEngine:
    engine = TransformersEngine(EngineSettings(dtype="float32", device="cpu",
                                               transformers=TransformersSettings(compile=compile_)))
    engine.load(resolve_model(ModelSpec(name=builtin, role="candidate", builtin=builtin)))
    return engine


def _fixed(engine: TransformersEngine, text: str, request_id: str = "r") -> tuple[GenerationRequest, GenerationOutput]:
    request = GenerationRequest(request_id, "doc", PROMPT, 16, seed=1, continuation=text)
    return request, engine.generate([request])[0]


@pytest.fixture(scope="module")
def llama_2(mirror: Path):  # noqa: ANN201 - transformers type
    return load_tokenizer(mirror / "tokenizers" / "llama-2" / "tokenizer.model")


def _tokenizers(tiny_pair, llama_2) -> dict:  # noqa: ANN001
    return {"tiny-baseline": load_tokenizer(tiny_pair.baseline), "tiny-expanded": load_tokenizer(tiny_pair.expanded),
            "llama-2": llama_2}


def test_text_ids_decode_to_the_text_with_byte_fallback(tiny_pair, llama_2) -> None:  # noqa: ANN001
    for name, tokenizer in _tokenizers(tiny_pair, llama_2).items():
        for text in HARD_TEXTS:
            ids = text_token_ids(tokenizer, [text])[0]
            assert tokenizer.decode(ids, skip_special_tokens=True) == text, (name, text)
            assert tokenizer.bos_token_id not in ids
        pieces = tokenizer.convert_ids_to_tokens(text_token_ids(tokenizer, [HARD_TEXTS[2]])[0])
        assert any(piece.startswith("<0x") for piece in pieces), f"{name}: no byte fallback exercised"
    # The boundary rule, stated in tokenization.text_token_ids: Japanese text starts with the lone dummy-prefix piece.
    assert llama_2.convert_ids_to_tokens(text_token_ids(llama_2, [HARD_TEXTS[1]])[0])[0] == "\u2581"


# compile = false: an eager static decoder serves fixed text; compile = true: the one that also serves generation.
@pytest.mark.parametrize(("builtin", "compile_"), [("tiny-baseline", False), ("tiny-expanded", True)])
def test_engine_emits_exactly_the_reference(tiny_pair, builtin: str, compile_: bool) -> None:  # noqa: ANN001
    engine = _engine(builtin, compile_)
    tokenizer = engine.tokenizer
    for index, text in enumerate(HARD_TEXTS):
        request, output = _fixed(engine, text, f"r{index}")
        reference = tuple(text_token_ids(tokenizer, [text])[0])
        assert output.reference_token_ids == reference
        assert output.output_token_ids == reference
        assert engine.decode(output.output_token_ids) == text
        assert fixed_text_error(request, output, engine.decode(output.output_token_ids)) is None
        assert output.prompt_tokens == len(tokenizer(PROMPT)["input_ids"])  # BOS + the prompt's ids
        assert 0 < output.first_token_s <= output.finished_s
    assert "fixed_text" in engine.describe()
    engine.close()


def test_engine_token_counts_equal_the_tokenizer_stage(tiny_pair) -> None:  # noqa: ANN001
    documents = load_corpus("tiny_ja")
    short = sorted((document.text for document in documents if len(document.text) <= 45), key=len)
    texts = [short[0], short[-2], short[-1]]  # two headings and the shortest paragraph: a quick CPU check
    for builtin in BUILTINS:
        stage = count_corpora([TokenizerSource(builtin, str(resolve_model(ModelSpec(name=builtin, role="candidate",
                                                                                   builtin=builtin)).tokenizer_source))],
                              ("tiny_ja",))[0]
        stage_counts = dict(zip((d.text for d in documents), stage.tokens[builtin], strict=True))
        engine = _engine(builtin, False)
        for text in texts:
            _, output = _fixed(engine, text)
            assert len(output.output_token_ids) == stage_counts[text], builtin
        engine.close()


def test_forced_mismatch_is_an_error(tiny_pair) -> None:  # noqa: ANN001
    engine = _engine("tiny-expanded", False)
    request, output = _fixed(engine, HARD_TEXTS[1])
    # One emitted id changed: the ids no longer are the reference's.
    altered = GenerationOutput(**{**output.__dict__, "output_token_ids": (output.output_token_ids[0] + 1,)
                                  + output.output_token_ids[1:]})
    error = fixed_text_error(request, altered, engine.decode(altered.output_token_ids))
    assert error is not None and FIXED_TEXT_MISMATCH in error and "token 0" in error
    # A tokenizer that normalises as Swallow's does (NFKC) cannot write full-width parentheses back: the decoded
    # text differs from the reference, which the check reports with the place of the difference.
    engine.tokenizer.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), engine.tokenizer.backend_tokenizer.normalizer])
    text = "東京（とうきょう）は日本の首都である。"
    request, output = _fixed(engine, text)
    error = fixed_text_error(request, output, engine.decode(output.output_token_ids))
    assert error is not None and "character 2" in error
    assert not writable_verbatim(text)  # the reference-text choice skips such texts


def test_sentence_ends_and_cut() -> None:
    text = "一文目です。「二文目！」三文目です？4.5 kmの道. 最後"
    assert sentence_ends(text) == [6, 12, 18, 27, len(text)]  # "4.5" is no sentence end, "道. " is
    settings = ReferenceTextSettings(target_chars=14, min_chars=5, max_chars=20, documents=1)
    assert cut_text(text, settings) == "一文目です。「二文目！」"  # 12 is nearer to 14 than 18
    assert cut_text(text, ReferenceTextSettings(target_chars=15, min_chars=13, max_chars=17)) is None
    assert cut_text(text, ReferenceTextSettings(target_chars=15, min_chars=5, max_chars=20)) == text[:12]  # tie: shorter
    assert cut_text("短い。", settings) is None


def test_reference_choice_is_seeded_and_filtered() -> None:
    settings = ReferenceTextSettings(documents=3, target_chars=10, min_chars=5, max_chars=30)
    documents = [Document(f"d:{i:02d}", f"これは{i}番目の文章です。続きの文です。") for i in range(12)]
    documents.append(Document("d:nfkc", "これは（括弧）のある文章です。"))
    documents.append(Document("d:space", "これは  空白の多い文章です。"))
    first = select_reference_texts(documents, settings, seed=7)
    assert first == select_reference_texts(list(reversed(documents)), settings, seed=7)  # file order does not matter
    assert [unit.id for unit in first] != [unit.id for unit in select_reference_texts(documents, settings, seed=8)]
    assert all(unit.text == settings.prompt and unit.continuation.endswith("。") for unit in first)
    chosen = {unit.id for seed in range(40) for unit in select_reference_texts(documents, settings, seed=seed)}
    assert "d:nfkc" not in chosen and "d:space" not in chosen and len(chosen) == 12
    with pytest.raises(Exception, match="only 12 of 14"):
        select_reference_texts(documents, ReferenceTextSettings(documents=13, target_chars=10, min_chars=5,
                                                                max_chars=30), seed=1)


def test_jsquad_reference_texts_are_writable(mirror: Path) -> None:
    settings = ReferenceTextSettings(documents=20)
    description = describe_reference_texts(settings, 5)
    assert "titles not kept" in description and "seeded with 5" in description and "dummy-prefix" in description
    units = select_reference_texts(load_corpus("jsquad", mirror=mirror), settings, seed=20231219)
    assert len({unit.id for unit in units}) == 20
    for unit in units:
        assert settings.min_chars <= len(unit.continuation) <= settings.max_chars
        assert unicodedata.normalize("NFKC", unit.continuation) == unit.continuation
        assert "[SEP]" not in unit.continuation


def test_japanese_chars_count_script_only() -> None:
    assert japanese_chars("日本語のテキスト、ABC 123。") == 10  # 日本語のテキスト + 、 + 。
    assert japanese_chars("ｶﾀｶﾅ（注）ー々") == 9
    assert japanese_chars("Hello, world! 12.5%") == 0


def test_reference_texts_config_is_validated(tmp_path: Path) -> None:
    from artifact.config import config_from_resolved, load_config
    from artifact.errors import ConfigError

    base = """
[experiment]
name = "ft"
[trials]
modes = ["fixed_text"]
[[models]]
name = "a"
role = "candidate"
builtin = "tiny-expanded"
[[models]]
name = "b"
role = "baseline"
builtin = "tiny-baseline"
"""
    path = tmp_path / "ft.toml"
    path.write_text(base)
    with pytest.raises(ConfigError, match=r"fixed_text.*needs a \[reference_texts\] section"):
        load_config(str(path))
    for section, message in [('corpus = "jsquadd"', "did you mean 'jsquad'"),
                             ("target_chars = 10\nmin_chars = 20", "min_chars <= target_chars <= max_chars"),
                             ('prompt = " "', "non-empty prompt"), ("documents = 0", "expected an integer > 0"),
                             ("cut = 3", "unknown field")]:
        path.write_text(base + "[reference_texts]\n" + section + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(str(path))
    path.write_text(base + '[engine]\nname = "vllm"\n[reference_texts]\n')
    with pytest.raises(ConfigError, match="runs on the transformers engine only"):
        load_config(str(path))
    path.write_text(base + '[reference_texts]\ncorpus = "tiny_ja"\ndocuments = 6\ntarget_chars = 40\nmin_chars = 20\n'
                           'max_chars = 60\nseed = 3\n')
    config = load_config(str(path))
    assert config.reference_texts == ReferenceTextSettings(corpus="tiny_ja", documents=6, target_chars=40, min_chars=20,
                                                           max_chars=60, seed=3)
    assert config_from_resolved(config.to_dict()).reference_texts == config.reference_texts
