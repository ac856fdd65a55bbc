"""Version shims (artifact/engines/compat.py), on real streams."""

from __future__ import annotations

import io
import sys

from artifact.engines.compat import stdout_with_a_file_descriptor


def test_an_in_memory_stdout_is_swapped_for_the_process_stdout_and_back(monkeypatch) -> None:
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stdout", captured)
    with stdout_with_a_file_descriptor():
        assert sys.stdout is sys.__stdout__
        assert isinstance(sys.stdout.fileno(), int)  # what vLLM 0.31.0's suppress_stdout() calls
    assert sys.stdout is captured


def test_a_stdout_with_a_descriptor_is_left_alone(monkeypatch, tmp_path) -> None:
    with open(tmp_path / "out.txt", "w", encoding="utf-8") as real_file:
        monkeypatch.setattr(sys, "stdout", real_file)
        with stdout_with_a_file_descriptor():
            assert sys.stdout is real_file
        assert sys.stdout is real_file
