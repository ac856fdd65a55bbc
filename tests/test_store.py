"""The run directory's records survive any generated text, and an interrupted append costs one record."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact.errors import ArtifactError
from artifact.store import REQUIRED_RECORD_FIELDS, RunDirectory


def record(record_id: str, **extra: object) -> dict:
    return {**{key: 0 for key in REQUIRED_RECORD_FIELDS}, "record_id": record_id, **extra}


def test_records_round_trip_text_with_unicode_line_separators(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path, "t")
    texts = ["吾輩は猫である\u2028名前は", "a\u0085b\u2029c\r\nd", "\x1c\x1d\x1e"]
    for index, text in enumerate(texts):
        run.append_record(record(str(index), output_text=text))
    assert [row["output_text"] for row in run.records()] == texts


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path, "t")
    run.append_record(record("a"))
    with run.file("trials.jsonl").open("a") as handle:
        handle.write('{"record_id": "b", "out')
    with pytest.warns(UserWarning, match="unreadable record skipped"):
        rows = run.records()
    assert [row["record_id"] for row in rows] == ["a"]


def test_records_missing_fields_are_skipped_with_a_warning(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path, "t")
    run.append_record(record("good"))
    run.append_record({"record_id": "bad", "phase": "measure"})
    with pytest.warns(UserWarning, match="record bad lacks"):
        assert [row["record_id"] for row in run.records()] == ["good"]


def test_repair_tail_ends_a_torn_line(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path, "t")
    run.append_record(record("a"))
    with run.file("trials.jsonl").open("a") as handle:
        handle.write('{"torn')
    run.repair_tail()
    run.append_record(record("b"))
    with pytest.warns(UserWarning, match="unreadable record skipped"):
        assert [row["record_id"] for row in run.records()] == ["a", "b"]


def test_create_reports_an_unwritable_output_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ArtifactError, match="cannot create the run directory"):
        RunDirectory.create(tmp_path / "file", "t")


def test_records_of_a_newer_schema_are_refused(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path, "t")
    run.file("trials.jsonl").write_text('{"schema_version": 99, "record_id": "x"}\n')
    with pytest.raises(ArtifactError, match="newer than this artifact reads"):
        run.records()


def test_open_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a run directory"):
        RunDirectory.open(tmp_path)
