"""Tokenizers for counting tokens, faithful to the SentencePiece model each one was trained with.

Llama 2 and Swallow tokenize with SentencePiece BPE; the 56.2% in the claim was measured that way.
transformers 5 no longer wraps SentencePiece: it converts `tokenizer.model` into a `tokenizers` BPE
and, for `LlamaTokenizer`, replaces the normaliser and pre-tokeniser with fixed ones. Measured here
with the Llama 2 model and transformers 5.19 (see tests/test_tokenization.py), the result differs from
`sentencepiece` on runs of spaces (merge order follows piece ids, not scores) and on text that begins
with a space (the dummy prefix is skipped), and it would drop a model's own normaliser (Swallow's
NFKC). `LlamaTokenizer(vocab_file=...)` is worse: it silently builds a 3-token vocabulary.

So wherever a source ships a `tokenizer.model`, this module builds the `tokenizers` pipeline from the
SentencePiece model itself (vocabulary, merges ordered by piece score, the model's normaliser,
dummy prefix, whitespace splitting as SentencePiece does it, byte fallback) and loads it through
`AutoTokenizer` as a plain fast tokenizer. Sources without a `tokenizer.model` load through
`AutoTokenizer` unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from artifact.data import cache_root
from artifact.errors import ArtifactError, DataError
from artifact.standin import is_named_source, resolve_named_source

if TYPE_CHECKING:
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerBase

SPM_FILENAME = "tokenizer.model"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
_SPACE = "\u2581"
# SentencePiece ModelProto.SentencePiece.Type and TrainerSpec.ModelType values.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED = 1, 2, 3, 4
_BPE = 2
_MODEL_TYPES = {1: "Unigram", 2: "BPE", 3: "word", 4: "char"}
_BUILD_FORMAT = "r2-spm-v1"
_BATCH = 512


def load_tokenizer(
    source: str | Path, revision: str | None = None, *, mirror: Path | None = None
) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a Hub repo id, a local folder, or a bare SentencePiece `.model` file.

    A Hub repo is fetched at `revision` (pin it: tokenizers on the Hub can change) and then treated
    as a local folder. A folder or file holding a SentencePiece BPE model goes through the faithful
    conversion described in the module docstring. `standin:NAME` and `data:MANIFEST_ID` name a stand-in
    or a manifest tokenizer file (artifact/standin.py), built or read through the data `mirror`.
    """
    if is_named_source(source):
        source = resolve_named_source(str(source), mirror)
    path = Path(source).expanduser()
    if path.is_file():
        return _from_sentencepiece_file(path)
    if path.is_dir():
        return _from_folder(path)
    if isinstance(source, str) and _HUB_ID.match(source):
        return _from_folder(_hub_snapshot(source, revision))
    raise DataError(
        f"Tokenizer source {str(source)!r} is neither an existing file or folder nor a Hub repo id "
        f"(owner/name). Give a path to a tokenizer folder or tokenizer.model, or a repo id."
    )


def text_token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """The token ids of each text on its own: the one tokenization rule for text (not prompts) everywhere.

    A text is encoded as SentencePiece encodes a standalone text (`sentencepiece.encode(text)`): the
    model's own normaliser and dummy-prefix space, no BOS/EOS or other special tokens. Text that happens
    to spell a special token (`<s>`) is tokenised as text, as SentencePiece does: corpus text is never a
    control sequence. The tokenizer stage counts these ids, and fixed-text timing emits exactly these ids
    after the prompt (which is tokenised as a prompt: BOS + its own ids), so both measure the same tokens.
    With a Llama-family vocabulary a Japanese text starts with the lone dummy-prefix piece "▁" (one token,
    the same for every such model); the decoder strips it, so the decoded ids give the text back.
    """
    ids: list[list[int]] = []
    for start in range(0, len(texts), _BATCH):
        batch = list(texts[start : start + _BATCH])
        encoded = tokenizer(
            batch,
            add_special_tokens=False,
            split_special_tokens=True,
            return_attention_mask=False,
        )["input_ids"]
        ids.extend(list(row) for row in encoded)
    return ids


def count_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Number of tokens of each text (`text_token_ids`: no BOS/EOS or other special tokens)."""
    return [len(ids) for ids in text_token_ids(tokenizer, texts)]


def _from_folder(folder: Path) -> PreTrainedTokenizerBase:
    spm_file = folder / SPM_FILENAME
    if spm_file.is_file():
        # A SentencePiece model decides the tokenization, with or without a tokenizer.json beside it: the
        # faithful conversion for BPE, a refusal otherwise (transformers' conversion of a Unigram model, or a
        # tokenizer.json made by it, drops the dummy prefix and differs from sentencepiece on most texts).
        return _from_sentencepiece_file(spm_file)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Cannot load a tokenizer from folder {folder}: {exc}") from None


def _hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """Download (or find in the Hugging Face cache) the tokenizer files of `repo_id@revision`."""
    from huggingface_hub import snapshot_download

    try:
        # A pinned revision already in the local cache needs no network (and works offline in every
        # huggingface_hub version); otherwise ask the Hub.
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_FILES, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or not completely): fall through to the download
        folder = None
    if folder is not None:
        return Path(folder)
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_FILES)
    except Exception as exc:  # huggingface_hub raises many unrelated types for "not reachable"
        raise ArtifactError(
            f"Cannot get the tokenizer of {repo_id}@{revision or 'main'} from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}). Fetch it while online first (`make fetch CONFIG=...`, which runs "
            f"scripts/prefetch_models.py, or huggingface_hub's `hf download {repo_id} --revision "
            f"{revision or 'main'}`), or pass a local folder or tokenizer.model path instead. Gated repos need HF_TOKEN."
        ) from None
    return Path(folder)


def _from_sentencepiece_file(model_file: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    proto = _read_model_proto(model_file)
    if proto.trainer_spec.model_type != _BPE:
        kind = _MODEL_TYPES.get(proto.trainer_spec.model_type, str(proto.trainer_spec.model_type))
        raise ArtifactError(
            f"{model_file} is a SentencePiece {kind} model; only SentencePiece BPE models (Llama 2, Swallow) are "
            f"counted, because only their conversion reproduces sentencepiece's token ids exactly (transformers' "
            f"conversion of a {kind} model, and a tokenizer.json made by it, drops the dummy prefix and gives "
            f"different counts). Compare tokenizers of the Llama family, or count this one with sentencepiece."
        )
    folder = _built_folder(model_file, proto)
    return AutoTokenizer.from_pretrained(str(folder))


def _read_model_proto(model_file: Path) -> sentencepiece_model_pb2.ModelProto:
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(model_file.read_bytes())
    except DecodeError:
        raise DataError(f"{model_file} is not a SentencePiece model file.") from None
    if not proto.pieces:
        raise DataError(f"{model_file} is not a SentencePiece model file (no pieces).")
    return proto


def _built_folder(model_file: Path, proto: sentencepiece_model_pb2.ModelProto) -> Path:
    """A cached tokenizer folder for this exact model file, built once and reused.

    The folder name is the file's hash, so a changed model never reuses a stale conversion, and it
    appears by an atomic rename, so a crash mid-build leaves nothing half-written.
    """
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()[:24]
    target = cache_root().parent / "tokenizers" / f"{_BUILD_FORMAT}-{digest}"
    if (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        shutil.copyfile(model_file, staging / SPM_FILENAME)
        _build_backend(proto).save(str(staging / "tokenizer.json"))
        config = _tokenizer_config(proto)
        (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")
        os.replace(staging, target)
    except OSError:
        if not (target / "tokenizer.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _tokenizer_config(proto: sentencepiece_model_pb2.ModelProto) -> dict[str, object]:
    """A plain fast-tokenizer config: its class keeps our pipeline (LlamaTokenizer would replace it)."""
    spec = proto.trainer_spec
    config: dict[str, object] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key, piece_id in (("unk_token", spec.unk_id), ("bos_token", spec.bos_id), ("eos_token", spec.eos_id)):
        if 0 <= piece_id < len(proto.pieces):
            config[key] = proto.pieces[piece_id].piece
    return config


def _build_backend(proto: sentencepiece_model_pb2.ModelProto) -> Tokenizer:
    """The `tokenizers` pipeline equivalent to SentencePiece BPE encoding of this model."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    unk_id = proto.trainer_spec.unk_id
    backend = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=_merges_by_score(proto, vocab),
            unk_token=proto.pieces[unk_id].piece if 0 <= unk_id < len(proto.pieces) else None,
            fuse_unk=True,
            byte_fallback=proto.trainer_spec.byte_fallback,
        )
    )
    backend.normalizer = _normalizer(proto)
    backend.pre_tokenizer = _pre_tokenizer(proto)
    backend.decoder = decoders.Sequence(
        [decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if proto.normalizer_spec.add_dummy_prefix else [])
    )
    special = [p.piece for p in proto.pieces if p.type in (_UNKNOWN, _CONTROL)]
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special])
    user = [p.piece for p in proto.pieces if p.type == _USER_DEFINED]
    backend.add_tokens([AddedToken(s, special=False, normalized=False) for s in user])
    _add_bos_post_processor(backend, proto)
    return backend


def _merges_by_score(
    proto: sentencepiece_model_pb2.ModelProto, vocab: dict[str, int]
) -> list[tuple[str, str]]:
    """Every split of every normal piece into two vocabulary pieces, best piece score first.

    SentencePiece BPE repeatedly joins the adjacent pair whose joined piece scores highest; a BPE
    merge list ranked by that score makes `tokenizers` take the same decisions.
    """
    ranked: list[tuple[float, int, int, str, str]] = []
    for index, piece in enumerate(proto.pieces):
        if piece.type != _NORMAL:
            continue
        text = piece.piece
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in vocab and right in vocab:
                ranked.append((-piece.score, index, vocab[left], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _normalizer(proto: sentencepiece_model_pb2.ModelProto) -> normalizers.Normalizer:
    from tokenizers import Regex, normalizers

    spec = proto.normalizer_spec
    steps: list[normalizers.Normalizer] = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(_SPACE))
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", _SPACE))
    return normalizers.Sequence(steps)


def _pre_tokenizer(proto: sentencepiece_model_pb2.ModelProto) -> pre_tokenizers.PreTokenizer:
    """Split into words where SentencePiece does: before each `▁` that does not follow a `▁`.

    With `allow_whitespace_only_pieces` a run of spaces stays in one word (SentencePiece's
    `SplitIntoWords`); without it every `▁` starts a word.
    """
    from tokenizers import Regex, pre_tokenizers

    spec = proto.trainer_spec
    if spec.treat_whitespace_as_suffix:
        raise ArtifactError("SentencePiece models with treat_whitespace_as_suffix are not supported.")
    if not spec.split_by_whitespace:
        return pre_tokenizers.Sequence([])
    pattern = f"(?<!{_SPACE}){_SPACE}" if spec.allow_whitespace_only_pieces else _SPACE
    return pre_tokenizers.Split(Regex(pattern), behavior="merged_with_next")


def _add_bos_post_processor(backend: Tokenizer, proto: sentencepiece_model_pb2.ModelProto) -> None:
    """Prepend BOS when special tokens are requested, as Llama-family models expect."""
    from tokenizers import processors

    bos_id = proto.trainer_spec.bos_id
    if not 0 <= bos_id < len(proto.pieces):
        return
    bos = proto.pieces[bos_id].piece
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
