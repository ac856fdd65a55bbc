"""Shared fixtures: an isolated cache (built tiny models, converted tokenizers) for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The data mirror (a folder laid out like dataset/manifest.toml's filenames); CI points it at ../shared/data.
DATA_MIRROR = Path(os.environ.get("R2_TEST_DATA_MIRROR", REPO.parent / "shared" / "data"))


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


@pytest.fixture(scope="session")
def mirror(isolated_cache: Path) -> Path:
    """The data files laid out like the manifest's filenames: the mirror when there is one, else downloaded (and
    sha256-checked) into the session's cache. When neither works the tests that need data fail, saying why:
    a skipped data test would let `make test` pass without testing the measurements."""
    if DATA_MIRROR.is_dir():
        return DATA_MIRROR
    from artifact.data import cache_root, fetch_all
    from artifact.errors import ArtifactError

    try:
        fetch_all()
    except (ArtifactError, OSError) as error:
        pytest.fail(f"no data mirror at {DATA_MIRROR} (set R2_TEST_DATA_MIRROR to a folder laid out like "
                    f"dataset/manifest.toml's filenames), and downloading the manifest's files failed: {error}",
                    pytrace=False)
    return cache_root()


# The embedded tiny pair as a config's [[models]] tables: the candidate with the expanded vocabulary, its baseline
TINY_MODELS = """
[[models]]
name = "tiny-expanded"
role = "candidate"
builtin = "tiny-expanded"
[[models]]
name = "tiny-baseline"
role = "baseline"
builtin = "tiny-baseline"
"""


def write_tiny_config(path: Path, name: str, models: str) -> Path:
    """A small CPU experiment on the prompts corpus: only the [[models]] tables differ between tests."""
    path.write_text(f"""
[experiment]
name = "{name}"
smoke = true
[generation]
max_new_tokens = 8
max_prompts = 3
[trials]
warmup = 0
measured = 2
modes = ["latency"]
[engine]
dtype = "float32"
device = "cpu"
[tokens]
corpora = ["prompts"]
reference = "prompts"
controls = []
[analysis]
bootstrap_resamples = 1000
{models}
""")
    return path
