"""The run directory: resolved config, environment, append-only trial records, results and reports."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
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
LOCK_FILE = ".lock"
SESSIONS_FILE = "sessions.jsonl"
TELEMETRY_LOG = "telemetry.jsonl"
APPEND_ONLY_LOGS = (SESSIONS_FILE, TELEMETRY_LOG)
REQUIRED_RECORD_FIELDS = ("record_id", "phase", "trial", "model", "mode", "prompt_id", "output_tokens", "output_chars",
                          "e2e_s")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, payload: Any) -> None:
    """Write to a temporary file first, so an interrupted write never leaves half a JSON file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    try:
        temporary.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


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


def _append_jsonl(path: Path, *rows: dict[str, Any]) -> None:
    """Append rows with one write(2) on an O_APPEND descriptor, then fsync: a kill leaves all of them or none
    (at worst a torn last line on power loss, which the reader skips), and two writers never interleave lines."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    @classmethod
    def create(cls, root: Path, name: str) -> RunDirectory:
        """A new, empty run directory. `mkdir` without `exist_ok` is the claim: two runs started in the same
        second never share a folder, the second takes the next free suffix."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArtifactError(f"cannot create the run directory: the output folder {root} cannot be made "
                                f"({error.strerror}); choose another --output") from None
        for suffix in range(1, 10_000):
            path = root / (f"{stamp}-{name}" if suffix == 1 else f"{stamp}-{name}-{suffix}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as error:
                raise ArtifactError(f"cannot create the run directory {path}: {error.strerror}; choose another --output") from None
            return cls(path)
        raise ArtifactError(f"{root}: 10,000 run directories named {stamp}-{name}; choose another --output")

    @classmethod
    def open(cls, path: Path) -> RunDirectory:
        if not (path / CONFIG_FILE).is_file():
            raise ArtifactError(
                f"{path}: not a run directory (no {CONFIG_FILE}). Give the folder that `artifact run` printed."
            )
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def lock(self) -> RunLock:
        """Hold the run directory for this process: a second `run --resume` on it stops with the holder's name.

        An advisory `flock` on a lock file: the kernel releases it when the holder exits, even on kill -9, so a
        crashed run never leaves a stale lock behind.
        """
        path = self.file(LOCK_FILE)
        try:
            handle = path.open("a+", encoding="utf-8")
        except OSError as error:
            raise ArtifactError(f"cannot lock the run directory {self.path}: {error.strerror}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder("")
            for _ in range(40):  # the holder writes its name just after taking the lock: give it a moment
                handle.seek(0)
                holder = _describe_holder(handle.read())
                if not holder.startswith("a process that"):
                    break
                time.sleep(0.05)
            handle.close()
            raise ArtifactError(
                f"{self.path}: in use by another artifact process ({holder}); wait for it to finish, or stop it, "
                "before resuming this run directory"
            ) from None
        lock = RunLock(handle)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}) + "\n")
            handle.flush()
        except OSError:
            lock.release()
            raise
        return lock

    def append_record(self, record: dict[str, Any]) -> None:
        self.append_records([record])

    def append_records(self, records: list[dict[str, Any]]) -> None:
        _append_jsonl(self.file(TRIALS_FILE), *({"schema_version": RECORD_SCHEMA_VERSION, **record} for record in records))

    def repair_tail(self) -> None:
        """End an interrupted append with a newline, so the next record starts on a line of its own (the torn
        line stays unreadable and is skipped, with a warning, when the records are read)."""
        for name in (TRIALS_FILE, PHASES_FILE, *APPEND_ONLY_LOGS):
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

    def append_row(self, name: str, row: dict[str, Any]) -> None:
        """One line appended (and synced) to an append-only log of the run directory."""
        _append_jsonl(self.file(name), row)

    def rows(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.file(name))

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


class RunLock:
    """The held lock of one run directory; `release()` (or process exit) frees it."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def release(self) -> None:
        if self._handle.closed:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()
        except OSError:
            pass  # the holder's name stays in the file; the lock itself is what counts
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        try:
            self._handle.close()
        except OSError:
            pass


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "a process that has not written its name yet"
