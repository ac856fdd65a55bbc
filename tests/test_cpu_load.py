"""CPU-load noise guard: /proc parsing on real sample lines, busy processes between two samples, the warnings."""

from __future__ import annotations

import os
from pathlib import Path

from artifact.measure.cpu_load import _own_tree, busy_processes, cpu_load, load_warning, parse_loadavg, parse_stat

# A real /proc/PID/stat line (a name with a space and parentheses) and /proc/loadavg line.
STAT = ("4242 (tmux: server (x)) S 1 4242 4242 0 -1 4194624 3059 0 0 0 1500 250 0 0 20 0 1 0 12345 "
        "12345678 1234 18446744073709551615 1 1 0 0 0 0 0 4096 1260 0 0 0 17 1 0 0 0 0 0")


def test_parse_stat_and_loadavg() -> None:
    assert parse_stat(STAT) == ("tmux: server (x)", 1, 1750)
    assert parse_stat("garbage") is None
    assert parse_loadavg("15.89 15.43 12.63 7/812 32768\n") == [15.89, 15.43, 12.63]
    assert parse_loadavg(None) is None and parse_loadavg("x y z") is None


def test_busy_processes_between_two_samples_and_warnings() -> None:
    before = {10: ("python", 1, 1000), 11: ("idle", 1, 50), 12: ("artifact", 1, 0)}
    after = {10: ("python", 1, 1090), 11: ("idle", 1, 51), 12: ("artifact", 1, 100), 13: ("new", 1, 999)}
    busy = busy_processes(before, after, 1.0, 100.0, own={12})
    assert busy == [{"pid": 12, "name": "artifact", "cpu_percent": 100.0, "own": True},
                    {"pid": 10, "name": "python", "cpu_percent": 90.0, "own": False}]
    warnings = load_warning({"busy_processes": busy, "loadavg": [3.5, 1.0, 1.0], "logical_cores": 2}, "before t0")
    assert warnings == ["other processes used 90% of a CPU core at 'before t0': python (pid 10, 90%)",
                        "load average 3.50 above the 2 logical cores at 'before t0'"]
    assert load_warning({"busy_processes": busy[:1], "loadavg": [0.5, 0.5, 0.5], "logical_cores": 2}, "x") == []


def test_own_tree_holds_this_process_and_its_descendants() -> None:
    table = {1: ("init", 0, 0), 100: ("artifact", 1, 0), 101: ("vllm engine", 100, 0), 102: ("worker", 101, 0),
             200: ("other", 1, 0)}
    assert _own_tree(table, 100) == {100, 101, 102}


def test_cpu_load_samples_this_machine(tmp_path: Path) -> None:
    sample = cpu_load(interval_s=0.05)
    assert sample["logical_cores"] == os.cpu_count() and sample["sampled_s"] >= 0.05
    assert sample["loadavg"] is not None and len(sample["loadavg"]) == 3
    assert all(process["cpu_percent"] > 10 for process in sample["busy_processes"])
    assert cpu_load(proc=tmp_path / "no-proc")["busy_processes"] == []
