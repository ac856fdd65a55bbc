"""Compile once: inductor's caches live in the project's cache folder, so a second model of the same shape and a
second run reuse the generated kernels instead of compiling them again.

torch keeps its FX-graph and autotuning caches under TORCHINDUCTOR_CACHE_DIR (default: a per-user folder in
/tmp, lost on reboot and absent in a fresh container). Pointing it at `<cache>/torchinductor` makes the cache
persistent, lets the Docker image ship a warm cache, and lets the run record where it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from artifact.paths import cache_dir
from artifact.tunings import TUNINGS

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"

def inductor_options(tuning: str) -> dict[str, Any]:
    """The options dict passed to torch.compile for a tuning choice (config validation names the valid ones)."""
    return dict(TUNINGS[tuning])


def _torch_default_cache_dir() -> str:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return default_cache_dir()


def configure_compile_cache() -> dict[str, Any]:
    """Persistent inductor caches in the project's cache folder, unless the user chose a folder before the
    artifact started (TORCHINDUCTOR_CACHE_DIR). Idempotent; torch reads the variable at every cache lookup, so
    this holds even when torch has already written its own /tmp default into it. Returns what the run records."""
    from artifact import USER_INDUCTOR_CACHE_DIR

    user = USER_INDUCTOR_CACHE_DIR
    if user and Path(user).resolve() == Path(_torch_default_cache_dir()).resolve():
        user = None  # torch's own default, written by torch in a program that ran it before importing the artifact
    if user:
        chosen, source = user, "environment"
    else:
        chosen, source = str(cache_dir() / "torchinductor"), "project cache"
    os.environ[CACHE_ENV] = chosen
    folder = Path(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    entries = sum(1 for _ in folder.rglob("*") if _.is_file())
    return {"inductor_cache_dir": str(folder), "inductor_cache_source": source, "inductor_cache_files_at_start": entries}
