"""Reference texts for fixed-text timing: the same Japanese text for every model, from a declared corpus.

Each unit is a `Prompt(id=<document id>, text=P, continuation=T)`: every model prefills the prompt P, then
emits T token by token in its own tokenization (artifact/engines/static_decode.py), so the time it takes is
the time that model needs to write T. T is the beginning of a corpus document, cut at a sentence end:

- Sentence ends: after 。！？!? (with any closing bracket or quote that follows, e.g. 。」), or after "." that
  is followed by whitespace or ends the document, or the end of the document itself.
- The cut is the sentence end nearest `target_chars` characters (ties: the shorter), among those with
  `min_chars` <= length <= `max_chars`; a document with no such sentence end is skipped.
- Only texts every tokenizer can write back verbatim are used: a text that NFKC normalisation changes
  (Swallow's tokenizer applies NFKC, so it could never emit e.g. full-width parentheses as such), that has
  leading or trailing whitespace, runs of spaces or line breaks is skipped. Characters are never normalised.
- Documents are chosen by a seeded shuffle of the eligible ones (sorted by id first, so the choice does not
  depend on file order), the first `documents` of the shuffle, returned in that order.

JSQuAD contexts are read without their `title [SEP] ` prefix (artifact/corpora.py): titles are not kept.
"""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

from artifact.config import ExperimentConfig, ReferenceTextSettings
from artifact.corpora import Document, Prompt, load_corpus
from artifact.errors import ConfigError

_SENTENCE_END = re.compile(r"(?:[。！？!?]+[」』）)\"'”’]*|\.(?=\s|$))")
_UNWRITABLE = re.compile(r"^\s|\s$|\s{2,}|[\r\n\t]")

TOKENIZATION_RULE = (
    "P is tokenised as a prompt (BOS + its ids) and prefilled; T is tokenised on its own exactly as the tokenizer "
    "stage counts a text (the model's own SentencePiece encoding with its normaliser and dummy-prefix space, no "
    "BOS/EOS), and its n tokens are emitted as 1 prefill + n - 1 decode steps; the emitted ids and their decoded "
    "text are checked against the reference."
)
_SOURCES = {
    "jsquad": "JSQuAD v1.3 validation contexts (Japanese Wikipedia paragraphs), titles not kept",
    "tiny_ja": "paragraphs of dataset/tiny_corpus_ja.txt (the tiny pair's own training text: a pipeline check only)",
}


def sentence_ends(text: str) -> list[int]:
    """Character offsets just after each sentence end of `text` (the end of the text counts as one)."""
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    if not ends or ends[-1] != len(text):
        ends.append(len(text))
    return ends


def cut_text(text: str, settings: ReferenceTextSettings) -> str | None:
    """The beginning of `text` up to the sentence end nearest the target length, or None if none fits."""
    fitting = [end for end in sentence_ends(text) if settings.min_chars <= end <= settings.max_chars]
    if not fitting:
        return None
    best = min(fitting, key=lambda end: (abs(end - settings.target_chars), end))
    return text[:best]


def writable_verbatim(text: str) -> bool:
    """True when every tokenizer here decodes its own tokens of `text` back to `text` (see module docstring)."""
    return unicodedata.normalize("NFKC", text) == text and not _UNWRITABLE.search(text)


def select_reference_texts(documents: list[Document], settings: ReferenceTextSettings, *, seed: int) -> list[Prompt]:
    """The fixed-text units from already loaded documents (pure: same documents and settings, same units)."""
    eligible: list[Prompt] = []
    for document in sorted(documents, key=lambda document: document.id):
        text = cut_text(document.text, settings)
        if text is not None and writable_verbatim(text):
            eligible.append(Prompt(id=document.id, text=settings.prompt, task="fixed_text", continuation=text))
    if len(eligible) < settings.documents:
        raise ConfigError(
            f"[reference_texts]: {settings.documents} documents asked for, but only {len(eligible)} of "
            f"{len(documents)} in corpus {settings.corpus!r} can be cut at a sentence end between "
            f"{settings.min_chars} and {settings.max_chars} characters and written back verbatim; lower "
            "reference_texts.documents or widen min_chars/max_chars"
        )
    random.Random(seed).shuffle(eligible)
    return eligible[: settings.documents]


def describe_reference_texts(settings: ReferenceTextSettings, seed: int) -> str:
    """One paragraph for reports and results: what the reference texts are and how they were made."""
    source = _SOURCES.get(settings.corpus, f"corpus {settings.corpus!r}")
    return (f"{settings.documents} documents of {source}, chosen by a shuffle seeded with {seed}, each cut at the "
            f"sentence end nearest {settings.target_chars} characters (within {settings.min_chars}-{settings.max_chars}); "
            f"texts NFKC would change are skipped; prompt P = {settings.prompt!r}. {TOKENIZATION_RULE}")


def reference_texts(config: ExperimentConfig, *, mirror: Path | None = None) -> list[Prompt]:
    """The fixed-text units of `config` ([reference_texts]): `Prompt(id=document id, text=P, continuation=T)`.

    Reads the corpus through the manifest (or dataset/ for shipped corpora); `mirror` is a data mirror folder
    (None: the environment's R2_DATA_MIRROR or the download cache). Raises ConfigError when the config has no
    [reference_texts] section or the corpus has too few usable documents.
    """
    settings = config.reference_texts
    if settings is None:
        raise ConfigError(f"{config.source}: no [reference_texts] section; fixed_text mode needs one")
    documents = load_corpus(settings.corpus, mirror=mirror)
    return select_reference_texts(documents, settings, seed=config.seed if settings.seed is None else settings.seed)
