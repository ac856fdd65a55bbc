"""Calls whose behaviour differs between the library versions this project runs on (stack.toml's, and newer).

Each shim says which version needs it and why, so that it can go when that version leaves the stack.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stdout_with_a_file_descriptor() -> Iterator[None]:
    """While vLLM starts, sys.stdout must have a file descriptor.

    vLLM 0.31.0's `suppress_stdout()` (vllm/utils/system_utils.py, entered when its process groups are
    created) calls `sys.stdout.fileno()`; vLLM 0.32 uses fd 1 directly. Where sys.stdout is an in-memory
    stream (a test runner's capture, a notebook), 0.31.0 fails with UnsupportedOperation; there, the process's
    own stdout stands in for the start-up and is swapped back afterwards.
    """
    try:
        sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        if sys.__stdout__ is not None:
            replaced, sys.stdout = sys.stdout, sys.__stdout__
            try:
                yield
            finally:
                sys.stdout = replaced
            return
    yield
