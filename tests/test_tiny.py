"""The embedded tiny pair: same base vocabulary, Japanese pieces appended, models differ only in vocabulary."""

from __future__ import annotations

import re

import sentencepiece as spm
import torch
from safetensors.torch import load_file

from artifact.corpora import load_prompts
from artifact.paths import dataset_dir
from artifact.tiny import MODEL_SHAPE, ensure_tiny_pair
from artifact.tokenization import count_tokens, load_tokenizer

JAPANESE = re.compile(r"^[\u3041-\u309F\u30A0-\u30FF\u4E00-\u9FFF\u3400-\u4DBFー]+$")


def test_expanded_vocabulary_appends_japanese_pieces(tiny_pair) -> None:
    base = spm.SentencePieceProcessor(model_file=str(tiny_pair.baseline / "tokenizer.model"))
    expanded = spm.SentencePieceProcessor(model_file=str(tiny_pair.expanded / "tokenizer.model"))
    assert expanded.get_piece_size() > base.get_piece_size()
    for index in range(base.get_piece_size()):
        assert expanded.id_to_piece(index) == base.id_to_piece(index)
    added = [expanded.id_to_piece(index) for index in range(base.get_piece_size(), expanded.get_piece_size())]
    assert added and all(JAPANESE.match(piece) for piece in added)


def test_expanded_tokenizer_needs_fewer_tokens_for_japanese_only(tiny_pair) -> None:
    prompts = [prompt.text for prompt in load_prompts(dataset_dir() / "prompts_swallow_bench.jsonl")]
    english = ["The train left the station early in the morning, and the fields were still covered in frost."]
    base, expanded = load_tokenizer(tiny_pair.baseline), load_tokenizer(tiny_pair.expanded)
    assert sum(count_tokens(expanded, prompts)) < 0.8 * sum(count_tokens(base, prompts))
    assert count_tokens(expanded, english) == count_tokens(base, english)


def test_tokenizers_match_sentencepiece(tiny_pair) -> None:
    prompts = [prompt.text for prompt in load_prompts(dataset_dir() / "prompts_swallow_bench.jsonl")]
    for folder in (tiny_pair.baseline, tiny_pair.expanded):
        reference = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        tokenizer = load_tokenizer(folder)
        for text in prompts:
            assert tokenizer(text, add_special_tokens=False).input_ids == reference.encode(text)


def test_models_differ_only_in_vocabulary_rows(tiny_pair) -> None:
    base = load_file(str(tiny_pair.baseline / "model.safetensors"))
    expanded = load_file(str(tiny_pair.expanded / "model.safetensors"))
    assert base.keys() == expanded.keys()
    for name, tensor in base.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            old = tensor.shape[0]
            assert torch.equal(expanded[name][:old], tensor)
            assert torch.allclose(expanded[name][old:], tensor.mean(dim=0, keepdim=True).expand_as(expanded[name][old:]))
        else:
            assert torch.equal(expanded[name], tensor)
    assert MODEL_SHAPE["hidden_size"] // MODEL_SHAPE["num_attention_heads"] >= 32  # vLLM's CPU backend needs it


def test_build_is_cached_and_deterministic(tiny_pair, tmp_path) -> None:
    assert ensure_tiny_pair() == tiny_pair
    rebuilt = ensure_tiny_pair(tmp_path)
    assert (rebuilt.expanded / "tokenizer.model").read_bytes() == (tiny_pair.expanded / "tokenizer.model").read_bytes()
    assert load_file(str(rebuilt.baseline / "model.safetensors"))["lm_head.weight"].equal(
        load_file(str(tiny_pair.baseline / "model.safetensors"))["lm_head.weight"]
    )
