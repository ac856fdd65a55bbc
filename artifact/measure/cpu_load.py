"""CPU load for the noise guards: the load average and the other processes that were busy while we measured.

A CPU-bound benchmark on a shared machine (or a GPU run whose host is busy feeding other jobs) is slowed by
whatever else runs; the environment record keeps what ran, so a reviewer can discount a noisy run. Read from
/proc (Linux); elsewhere the record says the load is unknown. Never raises.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

PROC = Path("/proc")
# A process that used more than this share of one core during the sample counts as busy.
BUSY_CPU_PERCENT = 10.0
# Other processes together above this share of one core make a noise warning.
OTHERS_WARNING_CPU_PERCENT = 50.0


def parse_loadavg(text: str | None) -> list[float] | None:
    """`/proc/loadavg`: the 1, 5 and 15 minute load averages."""
    try:
        return [float(value) for value in (text or "").split()[:3]] or None
    except ValueError:
        return None


def parse_stat(text: str) -> tuple[str, int, int] | None:
    """`/proc/PID/stat`: (command name, parent pid, user + system clock ticks). The name may hold spaces and
    parentheses; the fields after its closing parenthesis are fixed."""
    head, sep, tail = text.rpartition(")")
    if not sep or "(" not in head:
        return None
    fields = tail.split()
    try:
        return head.partition("(")[2], int(fields[1]), int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _ticks(proc: Path) -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if entry.name.isdigit():
            parsed = parse_stat(_read(entry / "stat") or "")
            if parsed:
                found[int(entry.name)] = parsed
    return found


def busy_processes(before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]], seconds: float,
                   ticks_per_second: float, own: set[int]) -> list[dict[str, Any]]:
    """Processes whose CPU time grew by more than BUSY_CPU_PERCENT of one core between two samples."""
    busy = []
    for pid, (name, _, ticks) in after.items():
        if pid in before and seconds > 0:
            percent = 100.0 * (ticks - before[pid][2]) / ticks_per_second / seconds
            if percent > BUSY_CPU_PERCENT:
                busy.append({"pid": pid, "name": name, "cpu_percent": round(percent, 1), "own": pid in own})
    return sorted(busy, key=lambda process: -process["cpu_percent"])


def _own_tree(processes: dict[int, tuple[str, int, int]], root: int) -> set[int]:
    """This benchmark and its descendants (vLLM runs its engine in a child)."""
    own = {root}
    grew = True
    while grew:
        grew = False
        for pid, (_, parent, _) in processes.items():
            if parent in own and pid not in own:
                own.add(pid)
                grew = True
    return own


def cpu_load(interval_s: float = 0.1, proc: Path = PROC) -> dict[str, Any]:
    """Load average now, and the processes busy during a short sample."""
    loadavg = parse_loadavg(_read(proc / "loadavg"))
    if not proc.is_dir():
        return {"loadavg": loadavg, "logical_cores": os.cpu_count(), "busy_processes": [], "sampled_s": 0.0}
    try:
        ticks_per_second = float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        ticks_per_second = 100.0
    before = _ticks(proc)
    started = time.monotonic()
    time.sleep(interval_s)
    after = _ticks(proc)
    elapsed = time.monotonic() - started
    return {"loadavg": loadavg, "logical_cores": os.cpu_count(), "sampled_s": round(elapsed, 3),
            "busy_processes": busy_processes(before, after, elapsed, ticks_per_second, _own_tree(after, os.getpid()))}


def load_warning(sample: dict[str, Any], label: str) -> list[str]:
    """Noise warnings from one sample: other busy processes, or a load average above the core count."""
    warnings = []
    others = [process for process in sample.get("busy_processes", []) if not process.get("own")]
    total = sum(process["cpu_percent"] for process in others)
    if total > OTHERS_WARNING_CPU_PERCENT:
        listed = ", ".join(f"{process['name']} (pid {process['pid']}, {process['cpu_percent']:.0f}%)" for process in others[:5])
        warnings.append(f"other processes used {total:.0f}% of a CPU core at '{label}': {listed}")
    loadavg, cores = sample.get("loadavg"), sample.get("logical_cores")
    if loadavg and cores and loadavg[0] > cores:
        warnings.append(f"load average {loadavg[0]:.2f} above the {cores} logical cores at '{label}'")
    return warnings
