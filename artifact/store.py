"""The run directory: resolved config, environment, append-only trial records, results and reports."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from artifact.errors import ArtifactError

RECORD_SCHEMA_VERSION = 1
TRIALS_FILE = "trials.jsonl"
CONFIG_FILE = "config.resolved.json"
ENVIRONMENT_FILE = "environment.json"
RESULTS_FILE = "results.json"
PHASES_FILE = "phases.jsonl"
MODELS_FILE = "models.json"
REQUIRED_RECORD_FIELDS = ("record_id", "phase", "trial", "model", "mode", "prompt_id", "output_tokens", "output_chars",
                          "e2e_s")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, payload: Any) -> None:
    """Write to a temporary file first, so an interrupted write never leaves half a JSON file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every readable line; a corrupt line (an interrupted append) is skipped with a warning, not fatal."""
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    # split("\n"), not splitlines(): generated text may hold U+2028 or U+0085, which JSON leaves unescaped
    # and splitlines() would treat as line ends.
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: unreadable record skipped", stacklevel=2)
    return rows


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    @classmethod
    def create(cls, root: Path, name: str) -> RunDirectory:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = root / f"{stamp}-{name}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{stamp}-{name}-{suffix}"
        try:
            path.mkdir(parents=True)
        except OSError as error:
            raise ArtifactError(f"cannot create the run directory {path}: {error.strerror}; choose another --output") from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDirectory:
        if not (path / CONFIG_FILE).is_file():
            raise ArtifactError(
                f"{path}: not a run directory (no {CONFIG_FILE}). Give the folder that `artifact run` printed."
            )
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def append_record(self, record: dict[str, Any]) -> None:
        _append_jsonl(self.file(TRIALS_FILE), {"schema_version": RECORD_SCHEMA_VERSION, **record})

    def repair_tail(self) -> None:
        """End an interrupted append with a newline, so the next record starts on a line of its own (the torn
        line stays unreadable and is skipped, with a warning, when the records are read)."""
        for name in (TRIALS_FILE, PHASES_FILE):
            path = self.file(name)
            if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                with path.open("a", encoding="utf-8") as handle:
                    handle.write("\n")

    def append_phase(self, phase: dict[str, Any]) -> None:
        _append_jsonl(self.file(PHASES_FILE), phase)

    def records(self) -> list[dict[str, Any]]:
        """Every readable record; one from a newer artifact stops the read, one lacking fields is skipped."""
        rows = read_jsonl(self.file(TRIALS_FILE))
        newer = [row for row in rows if row.get("schema_version", 0) > RECORD_SCHEMA_VERSION]
        if newer:
            raise ArtifactError(
                f"{self.file(TRIALS_FILE)}: records have schema version {newer[0]['schema_version']}, newer than this "
                f"artifact reads ({RECORD_SCHEMA_VERSION}); update the artifact"
            )
        complete = []
        for row in rows:
            missing = [key for key in REQUIRED_RECORD_FIELDS if key not in row]
            if missing:
                warnings.warn(f"{self.file(TRIALS_FILE)}: record {row.get('record_id', '?')} lacks {missing}; skipped",
                              stacklevel=2)
                continue
            complete.append(row)
        return complete

    def phases(self) -> list[dict[str, Any]]:
        return read_jsonl(self.file(PHASES_FILE))

    def write(self, name: str, payload: Any) -> None:
        write_json(self.file(name), payload)

    def read(self, name: str) -> Any:
        path = self.file(name)
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; the run may have stopped before writing it")
        return json.loads(path.read_text(encoding="utf-8"))

    def read_optional(self, name: str) -> Any | None:
        path = self.file(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
