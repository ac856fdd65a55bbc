"""Corpus loaders on the real pinned files, and the prompts-file validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact.corpora import Document, Prompt, load_corpus, load_prompts
from artifact.data import dataset_dir
from artifact.errors import DataError



@pytest.fixture(scope="module")
def wagahai(mirror: Path) -> list[Document]:
    return load_corpus("wagahai", mirror=mirror)


@pytest.fixture(scope="module")
def botchan(mirror: Path) -> list[Document]:
    return load_corpus("botchan", mirror=mirror)


def test_jsquad_distinct_contexts_without_title_prefix(mirror: Path) -> None:
    documents = load_corpus("jsquad", mirror=mirror)
    assert len(documents) == 1145
    assert len({d.id for d in documents}) == 1145
    assert documents[0].text.startswith("梅雨（つゆ、ばいう）は、北海道と小笠原諸島を除く日本")
    assert not any("[SEP]" in d.text for d in documents)


def test_characters_are_not_normalised(mirror: Path) -> None:
    """NFKC would turn the full-width parenthesis into ASCII '('; the raw text must keep it."""
    text = "".join(d.text for d in load_corpus("jsquad", mirror=mirror))
    assert "（" in text and "、" in text


def test_wagahai_markup_header_and_footer_are_removed(wagahai: list[Document]) -> None:
    text = "\n".join(d.text for d in wagahai)
    for marker in ("《", "》", "｜", "［＃", "底本", "青空文庫", "【テキスト中に現れる記号について】", "\r"):
        assert marker not in text, marker
    assert not any("\n" in d.text for d in wagahai)
    assert wagahai[0].text == "吾輩は猫である。名前はまだ無い。"
    assert wagahai[-1].text.startswith("次第に楽になってくる。")


def test_wagahai_ruby_words_come_out_plain(wagahai: list[Document]) -> None:
    assert wagahai[1].text.startswith("どこで生れたかとんと見当がつかぬ。")
    assert any("一番獰悪な種族であった" in d.text for d in wagahai)
    assert wagahai[0].id == "wagahai:18", "ids point at the source line of the paragraph"


def test_wagahai_chapter_headings_are_not_documents(wagahai: list[Document]) -> None:
    assert not any(d.text in {"一", "二", "十一"} for d in wagahai)


def test_botchan_is_clean_reflowed_prose(botchan: list[Document]) -> None:
    text = "".join(d.text for d in botchan)
    assert "\ufeff" not in text and "\r" not in text and "\n" not in text
    assert "Gutenberg" not in text
    assert botchan[0].text == "BOTCHAN (MASTER DARLING)"
    opening = next(d.text for d in botchan if d.text.startswith("Because of an hereditary"))
    assert opening.endswith('dislocated by jumping only from a second story!"')
    assert any(d.text == '"I\'ll see I don\'t get dislocated next time," I answered.' for d in botchan)


def test_unknown_corpus_suggests_the_closest_id() -> None:
    with pytest.raises(DataError, match=r"Valid corpus ids: .*wagahai.*Did you mean 'jsquad'\?"):
        load_corpus("jsquda")


def test_committed_prompts_file_loads() -> None:
    if not (dataset_dir() / "prompts_swallow_bench.jsonl").is_file():
        pytest.skip("dataset/prompts_swallow_bench.jsonl is not written yet")
    documents = load_corpus("prompts")
    assert documents and len({d.id for d in documents}) == len(documents)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record(**fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False)


def test_load_prompts_reads_ids_text_and_task(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        [record(id="a", prompt="日本の首都は？", task="qa"), "", record(id="b", prompt="説明して")],
    )
    assert load_prompts(path) == [Prompt("a", "日本の首都は？", "qa"), Prompt("b", "説明して", None)]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([record(id="a", prompt="x"), "{not json"], r"line 2: not valid JSON"),
        ([record(prompt="x")], r"line 1: missing field 'id'"),
        ([record(id="a", prompt="")], r"line 1: missing field 'prompt'"),
        ([record(id="a", prompt="x", task=3)], r"line 1: field 'task'"),
        (["[1, 2]"], r"line 1: expected a JSON object"),
        ([record(id="a", prompt="x"), record(id="a", prompt="y")], r"line 2: duplicate .*line 1"),
        ([""], r"no prompts"),
    ],
)
def test_load_prompts_rejects_bad_lines(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError, match=message) as info:
        load_prompts(path)
    assert str(path) in str(info.value)
