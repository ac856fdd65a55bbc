"""Named tokenizer sources for offline runs: labelled stand-ins built here, and tokenizer files from the manifest.

A config (or `artifact tokens --tokenizer NAME=SOURCE`) may name a tokenizer as
- `data:<manifest id>`: a tokenizer file declared in dataset/manifest.toml (loader "tokenizer"), read from the
  data mirror or the cache like every data file (e.g. `data:llama-2-tokenizer`, Llama 2's tokenizer.model);
- `standin:<name>`: a STAND-IN built from that file and text shipped in dataset/, for runs that need a
  tokenizer of a real model's vocabulary size when the real tokenizer cannot be fetched (no Hub access).

`standin:swallow-7b` follows Swallow's recipe at the scale of the project's own text: Llama 2's 32,000 pieces
unchanged, then Japanese pieces appended, exactly 43,176 in all (Swallow-7b's size):
1. a SentencePiece BPE (cap 16,000, as Swallow's) trained on dataset/tiny_corpus_ja.txt, keeping only pieces made
   of hiragana, katakana, kanji and the long-vowel mark that Llama 2 lacks (`artifact.tiny.expand_vocabulary`);
2. single characters, so that every character of those pieces is in the vocabulary and common kanji do not fall
   back to three UTF-8 byte tokens: the shipped text's own characters by frequency, then the kana and the
   6,355 kanji of JIS X 0208 (level 1, the common kanji, then level 2), in JIS order;
3. the BPE pieces fill what the characters leave of the 11,176 new pieces, best merges first; the cut drops the
   merges learned last, most of which occur once in the text (memorised phrases, not reusable units).
Only the vocabulary size matches Swallow's: its pieces come from ~13,000 characters of text instead of Swallow's
corpus, so it shortens Japanese less than Swallow's tokenizer does. It exists so that decode timing sees a
43,176-row embedding and LM head with a real vocabulary difference; every report made with one says so first.
The dataset's prompts are left out of the training text so that no corpus the tokens stage measures is in sample.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from artifact.errors import ConfigError, DataError
from artifact.paths import build_once, cache_dir, dataset_dir

if TYPE_CHECKING:
    from artifact.engines.base import ModelHandle

STANDIN_PREFIX = "standin:"
DATA_PREFIX = "data:"
BUILDER_VERSION = "1"
_TOKENIZER_LOADER = "tokenizer"
_JIS_KANA_ROWS = range(4, 6)  # JIS X 0208 rows 4-5: hiragana, katakana
_JIS_LEVEL1_ROWS = range(16, 48)  # the 2,965 level-1 (common) kanji
_JIS_LEVEL2_ROWS = range(48, 85)  # the 3,390 level-2 kanji


@dataclass(frozen=True)
class StandinSpec:
    """How one stand-in is built; every field enters the cache key."""

    name: str
    stands_in_for: str
    base_tokenizer: str  # manifest id of the base tokenizer.model
    vocab_size: int
    japanese_texts: tuple[str, ...]  # files in dataset/
    bpe_vocab_size: int = 16_000

    @property
    def description(self) -> str:
        return (
            f"STAND-IN, not {self.stands_in_for}'s tokenizer: Llama 2's 32,000 pieces plus Japanese pieces learned "
            f"from the project's small shipped text ({', '.join(self.japanese_texts)}) and padded with single kana "
            f"and kanji to {self.vocab_size:,} pieces. Only its vocabulary size matches; it shortens Japanese less "
            f"than the real tokenizer, so its token counts and anything projected from them say nothing about "
            f"{self.stands_in_for}'s tokenizer."
        )


STANDINS: dict[str, StandinSpec] = {
    "swallow-7b": StandinSpec(
        name="swallow-7b",
        stands_in_for="tokyotech-llm/Swallow-7b-hf",
        base_tokenizer="llama-2-tokenizer",
        vocab_size=43_176,
        japanese_texts=("tiny_corpus_ja.txt",),
    ),
}


def is_named_source(source: object) -> TypeGuard[str]:
    return isinstance(source, str) and source.startswith((STANDIN_PREFIX, DATA_PREFIX))


def named_source_problem(source: str) -> str | None:
    """Why `source` is not a valid named source (None when it is, or when it is not a named source at all)."""
    if source.startswith(STANDIN_PREFIX):
        name = source.removeprefix(STANDIN_PREFIX)
        if name not in STANDINS:
            return f"unknown stand-in tokenizer {name!r}; valid: {', '.join(STANDIN_PREFIX + known for known in STANDINS)}"
    elif source.startswith(DATA_PREFIX):
        from artifact.data import load_manifest

        manifest = load_manifest()
        tokenizers = [entry.id for entry in manifest.entries if entry.loader == _TOKENIZER_LOADER]
        if source.removeprefix(DATA_PREFIX) not in tokenizers:
            return (f"no tokenizer {source.removeprefix(DATA_PREFIX)!r} in {manifest.path}; valid: "
                    f"{', '.join(DATA_PREFIX + known for known in tokenizers)}")
    return None


def resolve_named_source(source: str, mirror: Path | None = None) -> Path:
    """The local tokenizer.model (or folder) a named source stands for, built or verified on first use."""
    problem = named_source_problem(source)
    if problem is not None:
        raise ConfigError(f"tokenizer {source!r}: {problem}")
    if source.startswith(DATA_PREFIX):
        from artifact.data import resolve_data_file

        return resolve_data_file(source.removeprefix(DATA_PREFIX), mirror=mirror)
    return ensure_standin(source.removeprefix(STANDIN_PREFIX), mirror=mirror)


def with_local_tokenizer(handle: ModelHandle, mirror: Path | None) -> ModelHandle:
    """`handle` with a named tokenizer source replaced by its local path, so that engines (which know no mirror)
    load it like any file; a stand-in is built here, before anything runs."""
    if not is_named_source(handle.tokenizer_source):
        return handle
    return replace(handle, tokenizer_source=str(resolve_named_source(handle.tokenizer_source, mirror)))


def provenance(source: str) -> dict[str, Any]:
    """What a run stores about a tokenizer source: for a stand-in (by name, or a built folder given by path), the
    label and how it was built."""
    if source.startswith(STANDIN_PREFIX) and source.removeprefix(STANDIN_PREFIX) in STANDINS:
        spec = STANDINS[source.removeprefix(STANDIN_PREFIX)]
        build_file = standin_folder(spec) / "build.json"
        build = json.loads(build_file.read_text(encoding="utf-8")) if build_file.is_file() else None
        return {"tokenizer_standin": True, "standin": {"name": spec.name, "stands_in_for": spec.stands_in_for,
                                                       "description": spec.description, "build": build}}
    path = Path(source).expanduser()
    build_file = (path if path.is_dir() else path.parent) / "build.json"
    build = json.loads(build_file.read_text(encoding="utf-8")) if build_file.is_file() else {}
    if not build.get("tokenizer_standin"):
        return {"tokenizer_standin": False}
    return {"tokenizer_standin": True, "standin": {"name": build["name"], "stands_in_for": build["stands_in_for"],
                                                   "description": build["description"], "build": build}}


def standins_in_results(results: dict[str, Any]) -> list[dict[str, str]]:
    """The stand-in tokenizers a run used, for the line at the top of its report: the token stage's record of
    them, and any model whose config names one (a run whose token stage did not record them is labelled too)."""
    used: dict[str, dict[str, str]] = {}
    tokenizers = (results.get("token_efficiency") or {}).get("tokenizers") or {}
    for model, info in tokenizers.items():
        if info.get("tokenizer_standin"):
            used[model] = {"model": model, "source": info["source"], "description": info["standin"]["description"]}
    for model in (results.get("config") or {}).get("models", []):
        source = model.get("tokenizer") or ""
        if model["name"] not in used and source.startswith(STANDIN_PREFIX) and source.removeprefix(STANDIN_PREFIX) in STANDINS:
            used[model["name"]] = {"model": model["name"], "source": source,
                                   "description": STANDINS[source.removeprefix(STANDIN_PREFIX)].description}
    return list(used.values())


def _fingerprint(spec: StandinSpec, base_sha256: str, texts: list[bytes]) -> str:
    digest = hashlib.sha256(f"{BUILDER_VERSION}\n{json.dumps(asdict(spec), sort_keys=True)}\n{base_sha256}".encode())
    for text in texts:
        digest.update(hashlib.sha256(text).digest())
    return digest.hexdigest()[:16]


def _shipped_texts(spec: StandinSpec) -> list[bytes]:
    paths = [dataset_dir() / name for name in spec.japanese_texts]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: the stand-in tokenizer {spec.name!r} is learned from this file, and it is missing")
    return [path.read_bytes() for path in paths]


def standin_folder(spec: StandinSpec, root: Path | None = None) -> Path:
    """The cache folder of this exact build: named by the spec, the base file's pinned sha256 and the texts, so
    finding a built stand-in needs neither the mirror nor a rebuild."""
    from artifact.data import load_manifest

    base_sha256 = load_manifest().get(spec.base_tokenizer).sha256
    fingerprint = _fingerprint(spec, base_sha256, _shipped_texts(spec))
    return (root or cache_dir() / "tokenizers") / f"standin-{spec.name}-{fingerprint}"


def ensure_standin(name: str, *, mirror: Path | None = None, root: Path | None = None) -> Path:
    """Build the stand-in once into the cache (atomically) and return its folder (tokenizer.model, build.json)."""
    spec = STANDINS[name]
    target = standin_folder(spec, root)
    if (target / "COMPLETE").is_file():
        return target
    from artifact.data import resolve_data_file

    base = resolve_data_file(spec.base_tokenizer, mirror=mirror).read_bytes()
    texts = [text.decode("utf-8") for text in _shipped_texts(spec)]

    def build(staging: Path) -> None:
        model, record = build_standin(spec, base, "\n".join(texts), staging)
        (staging / "tokenizer.model").write_bytes(model)
        record["tokenizer_model_sha256"] = hashlib.sha256(model).hexdigest()
        (staging / "build.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    build_once(target, build, built_by="artifact.standin")
    return target


def build_standin(spec: StandinSpec, base_model: bytes, japanese_text: str, workdir: Path) -> tuple[bytes, dict[str, Any]]:
    """The stand-in's tokenizer.model bytes and a record of what went into it (deterministic for equal inputs)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    from artifact.tiny import _JAPANESE_PIECE, _train_bpe, expand_vocabulary

    base = model_pb2.ModelProto()
    base.ParseFromString(base_model)
    known = {piece.piece for piece in base.pieces}
    budget = spec.vocab_size - len(base.pieces)
    if budget < 0:
        raise DataError(f"stand-in {spec.name!r}: the base tokenizer already has {len(base.pieces)} pieces, more than {spec.vocab_size}")

    bpe_work = workdir / "training"
    bpe_work.mkdir()
    japanese = model_pb2.ModelProto()
    japanese.ParseFromString(_train_bpe(japanese_text, spec.bpe_vocab_size, bpe_work, "japanese"))
    shutil.rmtree(bpe_work)

    def new(pieces: list[str]) -> list[str]:
        return [piece for piece in dict.fromkeys(pieces) if piece not in known and _JAPANESE_PIECE.match(piece)]

    text_chars = [char for char, _ in sorted(collections.Counter(japanese_text).items(), key=lambda item: (-item[1], item[0]))]
    jis_kana, jis_level1, jis_level2 = (_jis_characters(rows) for rows in (_JIS_KANA_ROWS, _JIS_LEVEL1_ROWS, _JIS_LEVEL2_ROWS))
    characters = new(text_chars + jis_kana + jis_level1 + jis_level2)[:budget]
    merged = [piece.piece for piece in japanese.pieces
              if piece.type == model_pb2.ModelProto.SentencePiece.NORMAL and len(piece.piece) > 1]
    merged_new = new(merged)
    kept_merged = merged_new[: budget - len(characters)]
    characters_set = set(characters) | known
    padding = [chr(code) for code in range(0x4E00, 0xA000)
               if chr(code) not in characters_set][: budget - len(characters) - len(kept_merged)]
    appended = kept_merged + characters + padding

    candidates = model_pb2.ModelProto()
    for text in appended:
        piece = candidates.pieces.add()
        piece.piece = text
        piece.type = model_pb2.ModelProto.SentencePiece.NORMAL
    expanded, added = expand_vocabulary(base_model, candidates.SerializeToString())
    if added != budget:
        raise DataError(f"stand-in {spec.name!r}: built {len(base.pieces) + added} pieces, expected {spec.vocab_size}")
    vocabulary = characters_set | set(padding)
    unreachable = [piece for piece in kept_merged if any(char not in vocabulary for char in piece)]
    if unreachable:  # a merged piece is only reachable when each of its characters is a piece
        raise DataError(f"stand-in {spec.name!r}: pieces with characters outside the vocabulary: {unreachable[:5]}")
    build = {
        "name": spec.name,
        "stands_in_for": spec.stands_in_for,
        "tokenizer_standin": True,
        "description": spec.description,
        "builder_version": BUILDER_VERSION,
        "base_tokenizer": spec.base_tokenizer,
        "base_pieces": len(base.pieces),
        "vocab_size": len(base.pieces) + added,
        "japanese_texts": list(spec.japanese_texts),
        "japanese_text_chars": len(japanese_text),
        "bpe_vocab_size_cap": spec.bpe_vocab_size,
        "appended": {
            "bpe_pieces_new": len(merged_new),
            "bpe_pieces_kept": len(kept_merged),
            "single_characters": len(characters),
            "single_characters_from_text": len(new(text_chars)),
            "padding_cjk_in_code_point_order": len(padding),
        },
        "order": "ids 32000.. : kept BPE pieces in merge order, then single characters (shipped text by frequency, "
                 "JIS X 0208 kana, level-1 kanji, level-2 kanji), then any CJK padding in code point order",
    }
    return expanded, build


def _jis_characters(rows: range) -> list[str]:
    """The characters of JIS X 0208 rows `rows`, in JIS order (read from Python's EUC-JP codec)."""
    characters = []
    for row in rows:
        for cell in range(1, 95):
            try:
                characters.append(bytes([0xA0 + row, 0xA0 + cell]).decode("euc_jp"))
            except UnicodeDecodeError:
                continue  # unassigned cells at the end of a row
    return characters
