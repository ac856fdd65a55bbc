"""Tokenizer efficiency: how many tokens each model's tokenizer needs for the same text (no GPU, no weights).

This is the measurable half of the claim's source: Swallow's tokenizer needs 56.2% of Llama 2's tokens for
Japanese. Characters are Unicode code points of the raw text; special tokens (BOS/EOS) are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifact.claims import Claim
from artifact.config import ExperimentConfig
from artifact.corpora import Document, corpus_preparation, load_corpus
from artifact.models import resolve_model
from artifact.standin import provenance
from artifact.stats import paired_ratio_of_means
from artifact.tokenization import count_tokens, load_tokenizer


ENGLISH_CORPORA = ("botchan",)


@dataclass(frozen=True)
class CorpusCounts:
    corpus: str
    document_ids: tuple[str, ...]
    chars: tuple[int, ...]
    utf8_bytes: tuple[int, ...]
    tokens: dict[str, tuple[int, ...]]  # by model name


def _documents(corpus: str, mirror: Path | None, limit: int) -> list[Document]:
    documents = [document for document in load_corpus(corpus, mirror=mirror) if document.text]
    return documents[:limit] if limit else documents


@dataclass(frozen=True)
class TokenizerSource:
    name: str
    source: str
    revision: str | None = None


def config_tokenizers(config: ExperimentConfig) -> list[TokenizerSource]:
    """Each model's own tokenizer, candidate first."""
    sources = []
    for model in (config.candidate, *config.baselines):
        handle = resolve_model(model)
        sources.append(TokenizerSource(model.name, handle.tokenizer_source, handle.revision))
    return sources


def count_corpora(tokenizer_sources: list[TokenizerSource], corpora: tuple[str, ...], *, mirror: Path | None = None,
                  max_documents: int = 0) -> list[CorpusCounts]:
    """Token counts per document, per corpus, for every tokenizer."""
    tokenizers = {item.name: load_tokenizer(item.source, item.revision, mirror=mirror) for item in tokenizer_sources}
    results = []
    for corpus in corpora:
        documents = _documents(corpus, mirror, max_documents)
        texts = [document.text for document in documents]
        results.append(CorpusCounts(
            corpus=corpus,
            document_ids=tuple(document.id for document in documents),
            chars=tuple(len(text) for text in texts),
            utf8_bytes=tuple(len(text.encode("utf-8")) for text in texts),
            tokens={name: tuple(count_tokens(tokenizer, texts)) for name, tokenizer in tokenizers.items()},
        ))
    return results


def summarise(counts: list[CorpusCounts], *, candidate: str, baselines: list[str], reference_corpus: str,
              controls: tuple[str, ...], reference: float | None, seed: int, resamples: int,
              confidence: float) -> dict[str, Any]:
    """Per corpus and tokenizer: totals and rates; per baseline: the paired token-length ratio with its interval."""
    corpora = []
    for corpus in counts:
        chars, utf8 = sum(corpus.chars), sum(corpus.utf8_bytes)
        models = {
            name: {
                "tokens": sum(tokens),
                "tokens_per_1000_chars": 1000 * sum(tokens) / chars,
                "tokens_per_1000_bytes": 1000 * sum(tokens) / utf8,
                "chars_per_token": chars / sum(tokens),
            }
            for name, tokens in corpus.tokens.items()
        }
        ratios = {}
        for baseline in baselines:
            interval = paired_ratio_of_means(corpus.tokens[candidate], corpus.tokens[baseline], seed=seed,
                                             n_resamples=resamples, confidence=confidence).to_dict()
            interval["contains_reference"] = None if reference is None else interval["low"] <= reference <= interval["high"]
            # Equal counts on every document mean the same tokenizer twice: no vocabulary effect can show.
            interval["identical_counts"] = corpus.tokens[candidate] == corpus.tokens[baseline]
            ratios[baseline] = interval
        corpora.append({
            "corpus": corpus.corpus,
            "documents": len(corpus.document_ids),
            "chars": chars,
            "utf8_bytes": utf8,
            "role": "reference" if corpus.corpus == reference_corpus
            else "control" if corpus.corpus in controls else "japanese",
            "preparation": corpus_preparation(corpus.corpus),
            "models": models,
            "token_length_ratio": ratios,
        })
    return {"candidate": candidate, "reference_value": reference, "reference_corpus": reference_corpus,
            "unit": "document (paired: same documents for every tokenizer)", "corpora": corpora}


def measure_config_tokens(config: ExperimentConfig, claim: Claim, *, mirror: Path | None = None,
                          tokenizer_overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The stage of `artifact run` and `artifact tokens CONFIG`: summary for the report, per-document counts
    for the projection. `tokenizer_overrides` (model name -> path) replaces a model's tokenizer source."""
    sources = config_tokenizers(config)
    unknown = set(tokenizer_overrides or {}) - {item.name for item in sources}
    if unknown:
        from artifact.errors import ConfigError

        raise ConfigError(f"--tokenizer: no model named {sorted(unknown)} in {config.name}; models: {[s.name for s in sources]}")
    sources = [TokenizerSource(item.name, (tokenizer_overrides or {}).get(item.name, item.source),
                               None if item.name in (tokenizer_overrides or {}) else item.revision) for item in sources]
    counts = count_corpora(sources, config.tokens.corpora, mirror=mirror, max_documents=config.tokens.max_documents)
    summary = summarise(
        counts, candidate=config.candidate.name, baselines=[model.name for model in config.baselines],
        reference_corpus=config.tokens.reference, controls=config.tokens.controls,
        reference=claim.secondary.reference if claim.secondary else None, seed=config.seed,
        resamples=config.analysis.bootstrap_resamples, confidence=config.analysis.confidence,
    )
    summary["tokenizers"] = {item.name: {"source": item.source, "revision": item.revision, **provenance(item.source)}
                             for item in sources}
    return {"summary": summary, "per_document": per_document(counts)}


def measure_named_tokenizers(tokenizers: dict[str, str], corpora: tuple[str, ...], claim: Claim, *, seed: int,
                             mirror: Path | None = None, resamples: int = 10_000,
                             confidence: float = 0.95) -> dict[str, Any]:
    """`artifact tokens` without a config: tokenizers by name -> source; the first is the candidate, the
    first corpus the reference, English corpora ("botchan") the controls."""
    names = list(tokenizers)
    counts = count_corpora([TokenizerSource(name, source) for name, source in tokenizers.items()], corpora, mirror=mirror)
    summary = summarise(counts, candidate=names[0], baselines=names[1:], reference_corpus=corpora[0],
                        controls=tuple(name for name in corpora if name in ENGLISH_CORPORA),
                        reference=claim.secondary.reference if claim.secondary else None, seed=seed,
                        resamples=resamples, confidence=confidence)
    summary["tokenizers"] = {name: {"source": source, "revision": None, **provenance(source)}
                             for name, source in tokenizers.items()}
    return {"summary": summary, "per_document": per_document(counts)}


def per_document(counts: list[CorpusCounts]) -> dict[str, Any]:
    """The raw counts, kept in the run directory so analysis and re-renders need no tokenizer."""
    return {
        corpus.corpus: {"document_ids": list(corpus.document_ids), "chars": list(corpus.chars),
                        "utf8_bytes": list(corpus.utf8_bytes), "tokens": {name: list(values) for name, values in corpus.tokens.items()}}
        for corpus in counts
    }
