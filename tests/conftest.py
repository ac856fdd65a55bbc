"""Shared fixtures: an isolated cache (built tiny models, converted tokenizers) for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never read or write the user's ~/.cache/r2-artifact."""
    cache = tmp_path_factory.mktemp("r2-cache")
    previous = os.environ.get("R2_CACHE_DIR")
    os.environ["R2_CACHE_DIR"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield cache
    if previous is None:
        os.environ.pop("R2_CACHE_DIR", None)
    else:
        os.environ["R2_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_pair(isolated_cache: Path):
    from artifact.tiny import ensure_tiny_pair

    return ensure_tiny_pair()
