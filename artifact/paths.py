"""Where the project's shipped data and the user's caches live."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def dataset_dir() -> Path:
    """The project's `dataset/` folder (beside the package); `R2_DATASET_DIR` overrides it."""
    return Path(os.environ.get("R2_DATASET_DIR", PROJECT_ROOT / "dataset")).expanduser()


def cache_dir() -> Path:
    """Root of the artifact's caches (built tiny models, downloaded data); `R2_CACHE_DIR` overrides it."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "r2-artifact"
    return Path(os.environ.get("R2_CACHE_DIR", default)).expanduser()
