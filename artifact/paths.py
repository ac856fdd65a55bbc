"""Where the project's shipped data and the user's caches live."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def dataset_dir() -> Path:
    """The project's `dataset/` folder (beside the package); `R2_DATASET_DIR` overrides it."""
    return Path(os.environ.get("R2_DATASET_DIR", PROJECT_ROOT / "dataset")).expanduser()


def cache_dir() -> Path:
    """Root of the artifact's caches (built tiny models, downloaded data); `R2_CACHE_DIR` overrides it."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "r2-artifact"
    return Path(os.environ.get("R2_CACHE_DIR", default)).expanduser()


def build_once(target: Path, build: Callable[[Path], None], *, built_by: str) -> Path:
    """Build a cache folder once: `build(staging)` fills a private staging folder that then replaces `target`
    in one rename, marked COMPLETE, so a reader never sees half a build and concurrent builders do not clash
    (the first finished one wins; the others' identical builds are dropped)."""
    if (target / "COMPLETE").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        build(staging)
        (staging / "COMPLETE").write_text(f"built by {built_by}\n")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "COMPLETE").is_file():  # another process won the race only if it finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
