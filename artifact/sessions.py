"""Sessions of a run directory: the first `artifact run` and every `--resume` is one session.

Each session appends what it saw (environment, telemetry, models loaded) instead of overwriting what an earlier
session wrote, so a resumed run keeps the whole history; the report lists the sessions and says which one was
interrupted.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from artifact.store import MODELS_FILE, SESSIONS_FILE, TELEMETRY_LOG, RunDirectory, utc_now

LEGACY_TELEMETRY_FILE = "telemetry.json"  # runs written before telemetry was appended as it was taken
# Environment facts that, when they change between sessions, make the sessions' timings hard to pool.
COMPARED_ENVIRONMENT_KEYS = ("python", "os", "cpu", "accelerators", "runtime", "packages", "container", "git")


def begin_session(run: RunDirectory, environment: dict[str, Any], *, measured_before: int) -> int:
    """Append this session's start (with its environment) and return its number (1 for a new run)."""
    number = 1 + max((row.get("session", 0) for row in run.rows(SESSIONS_FILE)), default=0)
    run.append_row(SESSIONS_FILE, {"event": "start", "session": number, "at": utc_now(), "pid": os.getpid(),
                                   "host": socket.gethostname(), "measured_records_before": measured_before,
                                   "environment": environment})
    return number


def end_session(run: RunDirectory, number: int, *, outcome: str, measured_after: int) -> None:
    run.append_row(SESSIONS_FILE, {"event": "end", "session": number, "at": utc_now(), "outcome": outcome,
                                   "measured_records_after": measured_after})


def append_telemetry(run: RunDirectory, session: int, snapshot: dict[str, Any]) -> None:
    """A telemetry snapshot goes to disk when it is taken: an interrupted session keeps the ones it took."""
    run.append_row(TELEMETRY_LOG, {"session": session, **snapshot})


def read_telemetry(run: RunDirectory) -> list[dict[str, Any]]:
    legacy = run.read_optional(LEGACY_TELEMETRY_FILE) or []
    return [*legacy, *run.rows(TELEMETRY_LOG)]


def merge_models(run: RunDirectory, loaded: dict[str, Any]) -> None:
    """models.json gains this session's loaded models; a model no session loaded again keeps its entry."""
    if loaded:
        run.write(MODELS_FILE, {**(run.read_optional(MODELS_FILE) or {}), **loaded})


def first_environment(run: RunDirectory) -> dict[str, Any] | None:
    starts = [row for row in run.rows(SESSIONS_FILE) if row.get("event") == "start"]
    return starts[0].get("environment") if starts else None


def session_summary(run: RunDirectory) -> list[dict[str, Any]]:
    """One row per session: when and where it ran, how it ended, how many measured records it added.

    A session with no end event stopped without reaching its end (killed, power loss): "interrupted".
    """
    rows = run.rows(SESSIONS_FILE)
    starts = {row["session"]: row for row in rows if row.get("event") == "start" and "session" in row}
    ends = {row["session"]: row for row in rows if row.get("event") == "end" and "session" in row}
    numbers = sorted(starts)
    first_environment_seen = starts[numbers[0]].get("environment") or {} if numbers else {}
    summary = []
    for index, number in enumerate(numbers):
        start, end = starts[number], ends.get(number)
        before = start.get("measured_records_before", 0)
        if end is not None:
            after = end.get("measured_records_after", before)
        elif index + 1 < len(numbers):
            after = starts[numbers[index + 1]].get("measured_records_before", before)
        else:
            after = None
        environment = start.get("environment") or {}
        summary.append({
            "session": number,
            "started": start.get("at"),
            "ended": end.get("at") if end else None,
            "outcome": end.get("outcome", "completed") if end else "interrupted",
            "host": start.get("host"),
            "pid": start.get("pid"),
            "measured_records_added": None if after is None else after - before,
            "environment_differs_in": [key for key in COMPARED_ENVIRONMENT_KEYS
                                       if environment.get(key) != first_environment_seen.get(key)],
        })
    return summary
