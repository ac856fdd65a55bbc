"""Corpora for the token-length measurement, as plain lists of documents.

Every loader returns the raw text a reader would see: markup and file boilerplate are removed,
but the characters themselves are never normalised (no NFKC, no width folding). The claim is a
ratio of token counts per unit of text, and the Swallow tokenizer applies NFKC internally; if the
corpus were normalised first, characters would be counted on a copy neither model was given.
Line breaks inside a file are structure, not text: documents are split on them, so a document
never contains CR or LF unless the source format puts newlines inside one record.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from artifact.data import dataset_dir, load_manifest, resolve_data_file
from artifact.errors import DataError

PROMPTS_FILENAME = "prompts_swallow_bench.jsonl"
TINY_JA_FILENAME = "tiny_corpus_ja.txt"


@dataclass(frozen=True)
class Document:
    """One unit of text, with an id that points back into its source file."""

    id: str
    text: str


@dataclass(frozen=True)
class Prompt:
    """A benchmark unit: its stable id, the prompt text, an optional task label, and for fixed-text timing the
    reference continuation every model must emit (in its own tokenization) after the prompt."""

    id: str
    text: str
    task: str | None = None
    continuation: str | None = None


# --- JSQuAD ----------------------------------------------------------------------------------

_JSQUAD_SEPARATOR = " [SEP] "


def read_jsquad(path: Path) -> list[Document]:
    """Distinct JSQuAD contexts, without their `title [SEP] ` prefix.

    JGLUE stores each context as `title [SEP] passage`. The `[SEP]` marker is an ASCII stand-in
    for BERT's separator token, added by the dataset format, not Japanese text: keeping it would
    add the same few Latin tokens to every context under both tokenizers and pull the measured
    ratio towards 1. The title is dropped with it because the passage is a Wikipedia paragraph
    that already names its subject. Contexts are deduplicated on the full stored string, the same
    unit the dataset counts (1,145 in v1.3 valid).
    """
    data = _read_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise DataError(f"{path}: expected a JSON object with a 'data' list (SQuAD v2 layout).")
    documents: list[Document] = []
    seen: set[str] = set()
    for article_index, article in enumerate(articles):
        for paragraph_index, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataError(
                    f"{path}: data[{article_index}].paragraphs[{paragraph_index}] has no 'context'."
                )
            if context in seen:
                continue
            seen.add(context)
            doc_id = f"jsquad:{article_index}:{paragraph_index}"
            documents.append(Document(doc_id, _strip_jsquad_title(context)))
    return documents


def _strip_jsquad_title(context: str) -> str:
    _, separator, passage = context.partition(_JSQUAD_SEPARATOR)
    return passage if separator else context


# --- JCommonsenseQA --------------------------------------------------------------------------


def read_jcommonsenseqa(path: Path) -> list[Document]:
    """The questions of JCommonsenseQA (JSON lines), one document each.

    Only the question is kept: the five answer choices are single words, and joining them would
    need separators that are not in the source.
    """
    documents: list[Document] = []
    for line_number, line in _numbered_lines(path):
        record = _parse_json_line(path, line_number, line)
        question = record.get("question")
        if not isinstance(question, str) or not question:
            raise DataError(f"{path}, line {line_number}: missing 'question' (a non-empty string).")
        documents.append(Document(f"jcommonsenseqa:{record.get('q_id', line_number)}", question))
    return documents


# --- Wagahai wa neko de aru (Aozora Bunko) ---------------------------------------------------

_AOZORA_RULE = re.compile(r"^-{10,}$")
_AOZORA_FOOTER_START = "底本："
_AOZORA_NOTE = re.compile(r"［＃[^］]*］")
_AOZORA_RUBY = re.compile(r"《[^》]*》")
_AOZORA_RUBY_START = "｜"
_AOZORA_HEADING_NOTE = "見出し］"
_IDEOGRAPHIC_SPACE = "\u3000"


def read_wagahai(path: Path) -> list[Document]:
    """Paragraphs of "吾輩は猫である" with the Aozora Bunko markup removed.

    Removed: the header (title, author and the explanation of the markup, up to and including the
    second rule of dashes), the footer (from `底本：` on), ruby readings `《...》`, the ruby-start
    marker `｜`, and editorial notes `［＃...］`. Chapter headings (lines carrying a `見出し` note)
    are dropped because they are bare numerals, not prose. The ideographic-space paragraph indent
    is typesetting and is removed too. Kept: the `※` that stands in for a character outside JIS
    (its note is removed), so each such character still counts as one.
    """
    lines = _read_text(path).splitlines()
    body = _aozora_body(lines, path)
    documents: list[Document] = []
    for offset, line in enumerate(body.lines):
        if _AOZORA_HEADING_NOTE in line:
            continue
        text = _strip_aozora_markup(line).lstrip(_IDEOGRAPHIC_SPACE)
        if text.strip():
            documents.append(Document(f"wagahai:{body.first_line + offset}", text))
    return documents


@dataclass(frozen=True)
class _Body:
    lines: list[str]
    first_line: int


def _aozora_body(lines: list[str], path: Path) -> _Body:
    rules = [index for index, line in enumerate(lines) if _AOZORA_RULE.match(line)]
    if len(rules) < 2:
        raise DataError(
            f"{path}: expected an Aozora Bunko header closed by two rules of dashes; found "
            f"{len(rules)}. Is this the pinned wagahaiwa_nekodearu.txt?"
        )
    start = rules[1] + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith(_AOZORA_FOOTER_START)), None
    )
    if end is None:
        raise DataError(f"{path}: no Aozora Bunko footer (a line starting with {_AOZORA_FOOTER_START}).")
    return _Body(lines=lines[start:end], first_line=start + 1)


def _strip_aozora_markup(line: str) -> str:
    without_notes = _AOZORA_NOTE.sub("", line)
    without_ruby = _AOZORA_RUBY.sub("", without_notes)
    return without_ruby.replace(_AOZORA_RUBY_START, "")


# --- Botchan (English control) ---------------------------------------------------------------

_GUTENBERG_START = "*** START OF"
_GUTENBERG_END = "*** END OF"
_GUTENBERG_END_LINE = "End of Project Gutenberg"
_PRODUCED_BY = "Produced by"
_BOTCHAN_WRAP_WIDTH = 72


def read_botchan(path: Path) -> list[Document]:
    """Paragraphs of the English "Botchan", the control corpus.

    The file has a byte-order mark, CRLF line ends, the Project Gutenberg header and licence, and
    no blank lines: its paragraphs were hard-wrapped at 72 columns and the blank lines between them
    removed. Paragraphs are rebuilt with the usual reflow rule: a line ends its paragraph when the
    next line's first word would still have fitted on it; otherwise the two lines are joined with
    one space, which is the space the wrap replaced.
    """
    lines = _gutenberg_body(_read_text(path).splitlines(), path)
    documents: list[Document] = []
    for number, paragraph in enumerate(_reflow(lines, _BOTCHAN_WRAP_WIDTH)):
        documents.append(Document(f"botchan:{number}", paragraph))
    return documents


def _gutenberg_body(lines: list[str], path: Path) -> list[str]:
    """The lines between the Project Gutenberg START and END markers (all lines if there are none)."""
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith(_GUTENBERG_START)), 0)
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith(_GUTENBERG_END)), len(lines)
    )
    body = lines[start:end]
    if body and body[-1].startswith(_GUTENBERG_END_LINE):
        body = body[:-1]
    if body and body[0].startswith(_PRODUCED_BY):
        body = body[1:]
    if not body:
        raise DataError(f"{path}: no text between the Project Gutenberg START and END markers.")
    return body


def _reflow(lines: list[str], width: int) -> list[str]:
    paragraphs: list[str] = []
    current: list[str] = []
    for index, line in enumerate(lines):
        if not line.strip():
            _flush(current, paragraphs)
            continue
        current.append(line.strip())
        following = lines[index + 1] if index + 1 < len(lines) else ""
        first_word = following.split(" ", 1)[0] if following.strip() else ""
        if not first_word or len(line) + 1 + len(first_word) <= width:
            _flush(current, paragraphs)
    _flush(current, paragraphs)
    return paragraphs


def _flush(current: list[str], paragraphs: list[str]) -> None:
    if current:
        paragraphs.append(" ".join(current))
        current.clear()


# --- Benchmark prompts (JSON lines in dataset/) ----------------------------------------------


def load_prompts(path: Path) -> list[Prompt]:
    """Read a prompts file: one JSON object a line with `id`, `prompt` and optional `task`.

    Blank lines are skipped. Each record is checked, so a bad file fails here with its line number
    instead of later inside a benchmark run.
    """
    prompts: list[Prompt] = []
    first_seen: dict[str, int] = {}
    for line_number, line in _numbered_lines(path):
        record = _parse_json_line(path, line_number, line)
        prompt = _prompt_from_record(record, path, line_number)
        if prompt.id in first_seen:
            raise DataError(
                f"{path}, line {line_number}: duplicate prompt id {prompt.id!r} (first on line "
                f"{first_seen[prompt.id]}); ids must be unique."
            )
        first_seen[prompt.id] = line_number
        prompts.append(prompt)
    if not prompts:
        raise DataError(f"{path}: no prompts; expected one JSON object per line.")
    return prompts


def _prompt_from_record(record: dict[str, object], path: Path, line_number: int) -> Prompt:
    for field in ("id", "prompt"):
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            raise DataError(
                f"{path}, line {line_number}: missing field {field!r} (a non-empty string)."
            )
    task = record.get("task")
    if task is not None and not isinstance(task, str):
        raise DataError(f"{path}, line {line_number}: field 'task' must be a string if given.")
    return Prompt(id=str(record["id"]), text=str(record["prompt"]), task=task)


def read_prompts(path: Path) -> list[Document]:
    """The benchmark prompts as documents (the prompt text, under the prompt's id)."""
    return [Document(prompt.id, prompt.text) for prompt in load_prompts(path)]


# --- Shipped Japanese text (dataset/tiny_corpus_ja.txt) ---------------------------------------


def read_plain_paragraphs(path: Path) -> list[Document]:
    """One document per non-blank line of a plain UTF-8 text file (the shipped tiny Japanese corpus).

    This is the text the tiny pair's tokenizers were trained on: a pipeline check that needs no download,
    never evidence about Swallow.
    """
    return [Document(f"{path.stem}:{number}", line) for number, line in _numbered_lines(path)]


# --- How each corpus is cut (stated in the tokens stage's results and the report) -----------------

PREPARATION: dict[str, str] = {
    "jsquad": "distinct contexts of JSQuAD v1.3 valid; each context's \"title [SEP] \" prefix is dropped "
              "(titles dropped: the separator is a dataset marker, the passage names its subject)",
    "jcommonsenseqa": "the questions only (answer choices dropped)",
    "wagahai": "paragraphs of the Aozora Bunko text; header, footer, ruby readings, editorial notes, chapter "
               "headings and the ideographic-space indent removed",
    "botchan": "paragraphs of the Project Gutenberg text, re-joined from the 72-column wrap; header and licence "
               "removed",
    "prompts": "the benchmark prompts, one document each, as written",
}


def corpus_preparation(corpus_id: str) -> str:
    return PREPARATION.get(corpus_id, "as read by its loader")


# --- Registry --------------------------------------------------------------------------------

Loader = Callable[[Path], list[Document]]

# Corpus id -> loader. Every id not in SHIPPED reads the manifest entry whose `loader` field equals the
# corpus id; the SHIPPED ones read their committed file in dataset/.
LOADERS: dict[str, Loader] = {
    "jsquad": read_jsquad,
    "jcommonsenseqa": read_jcommonsenseqa,
    "wagahai": read_wagahai,
    "botchan": read_botchan,
    "prompts": read_prompts,
    "tiny_ja": read_plain_paragraphs,
}
# Corpora shipped in dataset/ (no manifest entry, no download): corpus id -> file name.
SHIPPED = {"prompts": PROMPTS_FILENAME, "tiny_ja": TINY_JA_FILENAME}


def corpus_ids() -> list[str]:
    return sorted(LOADERS)


def load_corpus(
    corpus_id: str, *, mirror: Path | None = None, cache_dir: Path | None = None
) -> list[Document]:
    """Load a corpus by id, fetching and verifying its data file through the manifest."""
    loader = LOADERS.get(corpus_id)
    if loader is None:
        raise DataError(_unknown_corpus_message(corpus_id))
    if corpus_id in SHIPPED:
        return loader(dataset_dir() / SHIPPED[corpus_id])
    entry = load_manifest().by_loader(corpus_id)
    return loader(resolve_data_file(entry.id, mirror=mirror, cache_dir=cache_dir))


def _unknown_corpus_message(corpus_id: str) -> str:
    message = f"Unknown corpus {corpus_id!r}. Valid corpus ids: {', '.join(corpus_ids())}."
    close = difflib.get_close_matches(corpus_id, corpus_ids(), n=1)
    return f"{message} Did you mean {close[0]!r}?" if close else message


# --- File helpers ----------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """Decode UTF-8, dropping a byte-order mark (a file-format marker, not text)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"Corpus file not found: {path}.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid UTF-8 ({exc}).") from None


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}.") from None


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    # JSON lines end at LF (CRLF tolerated) only: splitlines() would also cut at U+2028, U+0085 and other
    # characters that JSON allows unescaped inside a string.
    lines = [line.removesuffix("\r") for line in _read_text(path).split("\n")]
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def _parse_json_line(path: Path, line_number: int, line: str) -> dict[str, object]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}, line {line_number}: not valid JSON ({exc.msg}).") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {line_number}: expected a JSON object.")
    return record
