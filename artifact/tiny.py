"""The embedded tiny model pair: a pipeline check that runs anywhere, built deterministically from `dataset/`.

It mirrors how Swallow was made, at toy scale:
- the baseline tokenizer is a SentencePiece BPE with byte fallback trained mostly on English
  (like Llama 2: little Japanese coverage, unknown characters fall back to UTF-8 bytes);
- the expanded tokenizer appends, after the baseline's pieces, the pieces of a Japanese BPE that consist
  only of hiragana, katakana, kanji and the long-vowel mark (Swallow kept 11,176 such pieces);
- the two models are one random-initialised Llama-architecture network; the expanded one only has more
  embedding and LM-head rows, the new rows initialised to the mean of the old ones (as Swallow did).

Nothing here says anything about Swallow's speed: it checks that the pipeline measures what it should.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

from artifact.paths import build_once, cache_dir, dataset_dir

BUILDER_VERSION = "2"
BUILTIN_MODELS = {"tiny-baseline": "baseline", "tiny-expanded": "expanded"}
JA_CORPUS = "tiny_corpus_ja.txt"
EN_CORPUS = "tiny_corpus_en.txt"
BASE_VOCAB_SIZE = 1000
JA_VOCAB_SIZE = 1500
SEED = 20231219
# hidden 64 with 2 heads gives head size 32: the smallest vLLM's CPU attention backend accepts.
MODEL_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}
_JAPANESE_PIECE = re.compile(r"^[\u3041-\u309F\u30A0-\u30FF\u4E00-\u9FFF\u3400-\u4DBFー]+$")


@dataclass(frozen=True)
class TinyPair:
    baseline: Path
    expanded: Path

    def folder(self, builtin: str) -> Path:
        return self.baseline if BUILTIN_MODELS[builtin] == "baseline" else self.expanded


def _fingerprint(texts: list[bytes]) -> str:
    digest = hashlib.sha256(BUILDER_VERSION.encode())
    for text in texts:
        digest.update(hashlib.sha256(text).digest())
    digest.update(json.dumps([MODEL_SHAPE, BASE_VOCAB_SIZE, JA_VOCAB_SIZE, SEED]).encode())
    return digest.hexdigest()[:12]


def ensure_tiny_pair(root: Path | None = None) -> TinyPair:
    """Build the pair once into the cache (atomically) and return its folders; later calls reuse it."""
    sources = [dataset_dir() / EN_CORPUS, dataset_dir() / JA_CORPUS]
    for source in sources:
        if not source.is_file():
            from artifact.errors import DataError

            raise DataError(f"{source}: the tiny model pair is built from this file, and it is missing")
    texts = [source.read_bytes() for source in sources]
    target = (root or cache_dir() / "models") / f"tiny-{_fingerprint(texts)}"
    pair = TinyPair(target / "baseline", target / "expanded")
    build_once(target, lambda staging: _build(staging, en_text=texts[0].decode("utf-8"), ja_text=texts[1].decode("utf-8")),
               built_by="artifact.tiny")
    return pair


def _train_bpe(text: str, vocab_size: int, workdir: Path, name: str) -> bytes:
    """Train a Llama-2-style SentencePiece BPE (byte fallback, split digits, no normalisation)."""
    import sentencepiece as spm

    corpus = workdir / f"{name}.txt"
    corpus.write_text("\n".join(line for line in text.splitlines() if line.strip()), encoding="utf-8")
    prefix = workdir / name
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces; the size is then an upper bound
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
    )
    return _without_paths(prefix.with_suffix(".model").read_bytes(), name)


def _without_paths(model_bytes: bytes, name: str) -> bytes:
    """SentencePiece stores the training file paths in the model; drop them so builds are byte-identical."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    del proto.trainer_spec.input[:]
    proto.trainer_spec.input.append(f"{name}.txt")
    proto.trainer_spec.model_prefix = name
    return proto.SerializeToString()


def expand_vocabulary(base_model: bytes, japanese_model: bytes) -> tuple[bytes, int]:
    """Append the Japanese-only pieces of `japanese_model` that `base_model` lacks; return (model, added)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    base = model_pb2.ModelProto()
    base.ParseFromString(base_model)
    japanese = model_pb2.ModelProto()
    japanese.ParseFromString(japanese_model)
    known = {piece.piece for piece in base.pieces}
    lowest = min(piece.score for piece in base.pieces)
    score = lowest
    added = 0
    for piece in japanese.pieces:
        if piece.type != model_pb2.ModelProto.SentencePiece.NORMAL or piece.piece in known:
            continue
        if not _JAPANESE_PIECE.match(piece.piece):
            continue
        new_piece = base.pieces.add()
        new_piece.piece = piece.piece
        # Below every base piece (base merges keep priority), each below the last. Scores are float32: near
        # Llama 2's lowest (-1e9, its whitespace pieces) one unit is below float32's resolution, and equal scores
        # would leave the merge order to each implementation's tie-break.
        score = _strictly_below(lowest - 1.0 - added, score)
        new_piece.score = score
        new_piece.type = model_pb2.ModelProto.SentencePiece.NORMAL
        known.add(piece.piece)
        added += 1
    return base.SerializeToString(), added


def _strictly_below(wanted: float, previous: float) -> float:
    """`wanted` if float32 keeps it below `previous`, else the next float32 below `previous`."""
    import numpy as np

    if np.float32(wanted) < np.float32(previous):
        return float(np.float32(wanted))
    return float(np.nextafter(np.float32(previous), np.float32(-np.inf)))


def _piece_count(model_bytes: bytes) -> int:
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    return len(proto.pieces)


def _save_tokenizer(model_bytes: bytes, folder: Path) -> None:
    """Save like a Hub repo: tokenizer.model plus the faithful fast-tokenizer conversion of it."""
    from artifact.tokenization import load_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / "tokenizer.model"
    model_file.write_bytes(model_bytes)
    tokenizer = load_tokenizer(model_file)
    tokenizer.model_max_length = MODEL_SHAPE["max_position_embeddings"]
    tokenizer.save_pretrained(folder)


def _append_mean_rows(model: "LlamaForCausalLM", added: int) -> None:
    """Grow embedding and LM head by `added` rows equal to the mean of the existing rows (Swallow's init)."""
    import torch

    old_vocab = model.config.vocab_size
    model.resize_token_embeddings(old_vocab + added, mean_resizing=False)
    with torch.no_grad():
        for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            matrix[old_vocab:] = matrix[:old_vocab].mean(dim=0, keepdim=True)


def _build(staging: Path, *, en_text: str, ja_text: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    work = staging / "training"
    work.mkdir()
    # A trace of Japanese in the base corpus gives the base vocabulary a little coverage, as Llama 2 had.
    base_model = _train_bpe(en_text, BASE_VOCAB_SIZE, work, "base")
    japanese_model = _train_bpe(ja_text, JA_VOCAB_SIZE, work, "japanese")
    expanded_model, added = expand_vocabulary(base_model, japanese_model)

    baseline_dir, expanded_dir = staging / "baseline", staging / "expanded"
    _save_tokenizer(base_model, baseline_dir)
    _save_tokenizer(expanded_model, expanded_dir)

    base_vocab = _piece_count(base_model)
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=base_vocab,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        torch_dtype="float32",
        **MODEL_SHAPE,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(baseline_dir)
    _append_mean_rows(model, added)
    model.save_pretrained(expanded_dir)
    (staging / "build.json").write_text(
        json.dumps({"base_vocab": base_vocab, "added_japanese_pieces": added, "seed": SEED, "shape": MODEL_SHAPE}, indent=2)
    )
    shutil.rmtree(work)
