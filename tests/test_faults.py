"""kill -9 at random moments of real runs, then resume: nothing lost, nothing twice, the same deterministic results
as an uninterrupted run; two resumes at once: one refuses; a planted Hub token is written nowhere.
scripts/fault_injection.py does the work (with more kill points it is the benchmark the README quotes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_kill_9_at_random_points_then_resume_loses_nothing(tmp_path: Path, isolated_cache: Path, tiny_pair) -> None:
    summary_file = tmp_path / "summary.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fault_injection.py"), "--kills", "2", "--seed", "3",
         "--work", str(tmp_path / "work"), "--cache", str(isolated_cache), "--json", str(summary_file)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=1800, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(summary_file.read_text())
    summary, points = report["summary"], report["points"]
    assert summary["kill_points"] == 2 and summary["points_with_losses"] == 0
    assert all(point["resume_rc"] == 0 and point["lost"] == [] for point in points)
    concurrent = summary["concurrent_resumes"]
    assert concurrent["lost"] == [] and concurrent["return_codes"] in ([0, 2], [0, 0])
    if concurrent["return_codes"] == [0, 2]:  # (else the first resume had finished before the second started)
        assert "in use by another artifact process (pid" in concurrent["refusal"]
    assert summary["planted_token_found_in"] == []
