"""Manifest validation and the three ways a data file is resolved: mirror, cache, download."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifact import data
from artifact.data import (
    DataError,
    fetch_all,
    load_manifest,
    resolve_data_file,
    sha256_of,
)

REPO = Path(__file__).resolve().parent.parent
ENTRY_FIELDS = dict(
    revision="0" * 40,
    path_in_repo="x.txt",
    license="CC0",
    filename="corpora/x.txt",
    loader="botchan",
)


@pytest.fixture
def mirror() -> Path:
    """The shared read-only data folder; its absence skips the test with a visible reason."""
    path = Path(os.environ.get("R2_TEST_DATA_MIRROR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"data mirror {path} not found (set R2_TEST_DATA_MIRROR)")
    return path


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may read the developer's mirror setting or write to the real cache."""
    monkeypatch.delenv("R2_DATA_MIRROR", raising=False)
    monkeypatch.delenv("R2_DATASET_DIR", raising=False)
    monkeypatch.setenv("R2_CACHE_DIR", str(tmp_path / "cache"))


def write_manifest(path: Path, **fields: str) -> Path:
    lines = ["[[file]]"] + [f'{key} = "{value}"' for key, value in fields.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on the loopback address: downloads run pooch's real HTTP path, offline."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on: the connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/absent.txt"


def url_entry_manifest(tmp_path: Path, url: str, sha256: str) -> data.Manifest:
    """A one-entry manifest with the given URL and sha256."""
    fields = dict(id="x", url=url, sha256=sha256, **ENTRY_FIELDS)
    return load_manifest(write_manifest(tmp_path / "manifest.toml", **fields))


def flipped_copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    content = bytearray(source.read_bytes())
    content[len(content) // 2] ^= 0x01
    target.write_bytes(bytes(content))
    return target


def test_project_manifest_declares_pinned_raw_urls() -> None:
    manifest = load_manifest()
    assert manifest.path == REPO / "dataset" / "manifest.toml"
    assert set(manifest.ids()) == {
        "jsquad-v1.3-valid",
        "jcommonsenseqa-v1.3-valid",
        "wagahaiwa-nekodearu",
        "botchan",
        "llama-2-tokenizer",
    }
    for entry in manifest.entries:
        assert entry.url == (
            f"https://raw.githubusercontent.com/{entry.repo}/{entry.revision}/{entry.path_in_repo}"
        )
        assert len(entry.revision) == 40 and len(entry.sha256) == 64
    assert manifest.get("llama-2-tokenizer").loader == "tokenizer"
    assert manifest.by_loader("jsquad").filename == "corpora/jsquad-v1.3-valid.json"


def test_missing_field_names_entry_and_field(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.toml", id="broken", url="file:///x", sha256="a" * 64)
    with pytest.raises(DataError, match=r"id = 'broken'.*missing field 'revision'") as info:
        load_manifest(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(id="a", url="u", sha256="xyz", **ENTRY_FIELDS), "64 hex digits"),
        (dict(id="a", url="u", sha256="a" * 64, **{**ENTRY_FIELDS, "filename": "../x"}), "relative"),
    ],
)
def test_invalid_field_values(tmp_path: Path, fields: dict[str, str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_manifest(write_manifest(tmp_path / "m.toml", **fields))


def test_duplicate_ids_and_bad_toml(tmp_path: Path) -> None:
    entry = write_manifest(tmp_path / "one.toml", id="a", url="u", sha256="a" * 64, **ENTRY_FIELDS)
    doubled = tmp_path / "two.toml"
    doubled.write_text(entry.read_text() * 2, encoding="utf-8")
    with pytest.raises(DataError, match="'a' appears twice"):
        load_manifest(doubled)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[file]\n", encoding="utf-8")
    with pytest.raises(DataError, match="not valid TOML"):
        load_manifest(bad)
    with pytest.raises(DataError, match="not found"):
        load_manifest(tmp_path / "absent.toml")


def test_unknown_entry_lists_known_ids() -> None:
    with pytest.raises(DataError, match="Known ids: .*botchan"):
        resolve_data_file("botchen", mirror=Path("/nonexistent"))


def test_dataset_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert data.dataset_dir() == REPO / "dataset"
    monkeypatch.setenv("R2_DATASET_DIR", str(tmp_path))
    assert data.dataset_dir() == tmp_path


def test_mirror_files_are_verified_in_place(mirror: Path, tmp_path: Path) -> None:
    fetched = fetch_all(mirror=mirror, cache_dir=tmp_path / "cache")
    assert [f.source for f in fetched] == ["mirror"] * len(load_manifest().entries)
    for item in fetched:
        assert item.path.parent.is_relative_to(mirror)
    assert not (tmp_path / "cache").exists(), "a mirror must not be copied into the cache"


def test_mirror_from_environment(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R2_DATA_MIRROR", str(mirror))
    assert resolve_data_file("botchan") == mirror / "corpora" / "botchan.txt"


def test_mirror_without_the_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found in mirror folder .*botchan\.txt"):
        resolve_data_file("botchan", mirror=tmp_path)


def test_corrupt_mirror_file_is_refused_with_both_hashes(mirror: Path, tmp_path: Path) -> None:
    entry = load_manifest().get("botchan")
    bad = flipped_copy(mirror / entry.filename, tmp_path / "mirror" / entry.filename)
    with pytest.raises(DataError) as info:
        resolve_data_file("botchan", mirror=tmp_path / "mirror", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert entry.sha256 in message and sha256_of(bad) in message and str(bad) in message
    assert not (tmp_path / "cache").exists()


def test_download_fills_cache_then_cache_is_used(mirror: Path, tmp_path: Path, served) -> None:
    folder, base = served
    source = shutil.copy(mirror / "corpora" / "botchan.txt", folder / "botchan.txt")
    manifest = url_entry_manifest(tmp_path, f"{base}/botchan.txt", sha256_of(source))
    cache = tmp_path / "cache"
    (first,) = fetch_all(cache_dir=cache, manifest=manifest)
    assert first.source == "download" and first.path == cache / "corpora" / "x.txt"
    assert first.path.read_bytes() == source.read_bytes()
    (second,) = fetch_all(cache_dir=cache, allow_download=False, manifest=manifest)
    assert second.source == "cache" and second.path == first.path
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["x.txt"]


def test_corrupt_download_leaves_nothing_in_cache(mirror: Path, tmp_path: Path, served) -> None:
    folder, base = served
    source = mirror / "corpora" / "botchan.txt"
    bad = flipped_copy(source, folder / "botchan.txt")
    manifest = url_entry_manifest(tmp_path, f"{base}/botchan.txt", sha256_of(source))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"refused: .*expected .*{sha256_of(source)}.*got .*{sha256_of(bad)}"):
        resolve_data_file("x", cache_dir=cache, manifest=manifest)
    assert list((cache / "corpora").iterdir()) == []


def test_corrupt_cache_file_is_refused(mirror: Path, tmp_path: Path) -> None:
    source = mirror / "corpora" / "botchan.txt"
    manifest = url_entry_manifest(tmp_path, closed_port_url(), sha256_of(source))
    flipped_copy(source, tmp_path / "cache" / "corpora" / "x.txt")
    with pytest.raises(DataError, match="sha256 mismatch"):
        resolve_data_file("x", cache_dir=tmp_path / "cache", manifest=manifest)


def test_failed_download_is_one_line_pointing_to_the_mirror_option(tmp_path: Path) -> None:
    manifest = url_entry_manifest(tmp_path, closed_port_url(), "a" * 64)
    with pytest.raises(DataError, match=r"--data-mirror DIR or R2_DATA_MIRROR") as info:
        resolve_data_file("x", cache_dir=tmp_path / "cache", manifest=manifest)
    assert "\n" not in str(info.value)
    assert [path for path in (tmp_path / "cache").rglob("*") if path.is_file()] == []


def test_missing_file_on_the_server_is_one_line(tmp_path: Path, served) -> None:
    _, base = served
    manifest = url_entry_manifest(tmp_path, f"{base}/absent.txt", "a" * 64)
    with pytest.raises(DataError, match=r"404") as info:
        resolve_data_file("x", cache_dir=tmp_path / "cache", manifest=manifest)
    assert "\n" not in str(info.value)


def test_fetch_lists_every_bad_file_not_only_the_first(mirror: Path, tmp_path: Path) -> None:
    shipped = load_manifest()
    copy = tmp_path / "mirror"
    for entry in shipped.entries:
        (copy / entry.filename).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mirror / entry.filename, copy / entry.filename)
    first, *_, last = shipped.entries
    flipped_copy(mirror / first.filename, copy / first.filename)
    (copy / last.filename).unlink()
    with pytest.raises(DataError) as info:
        fetch_all(mirror=copy, manifest=shipped)
    message = str(info.value)
    assert message.startswith(f"2 of {len(shipped.entries)} data files could not be fetched")
    assert f"sha256 mismatch for data file {first.id!r}" in message
    assert f"Data file {last.id!r} not found in mirror folder" in message
    assert len(message.splitlines()) == 3


def test_no_download_when_disallowed(tmp_path: Path) -> None:
    manifest = url_entry_manifest(tmp_path, closed_port_url(), "a" * 64)
    with pytest.raises(DataError, match="downloads are off.*artifact fetch"):
        resolve_data_file("x", cache_dir=tmp_path / "cache", allow_download=False, manifest=manifest)


def test_default_cache_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R2_CACHE_DIR")
    assert data.cache_root() == Path.home() / ".cache" / "r2-artifact" / "data"


# --- fuzzing: any manifest text gives a manifest or one DataError, never another exception -----------

TOML_PIECES = st.sampled_from([
    "[[file]]\n", "[file]\n", "[[other]]\n", 'id = "a"\n', 'id = "a"\n', "id = 3\n", 'url = "https://x/y"\n',
    'revision = "r"\n', 'path_in_repo = "p"\n', f'sha256 = "{"ab" * 32}"\n', 'sha256 = "xyz"\n',
    'license = "CC0"\n', 'filename = "corpora/a.txt"\n', 'filename = "/etc/passwd"\n', 'filename = "../x"\n',
    'loader = "botchan"\n', 'repo = 5\n', "file = 1\n", "file = []\n", "file = [1, 2]\n", 'id = ""\n',
    "= broken\n", '"\n', "\x00", "\u2028", "[[file]]\nfilename = [1]\n",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.lists(TOML_PIECES, max_size=24).map("".join), st.text(max_size=200)))
def test_manifest_loader_never_raises_anything_but_a_data_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "manifest.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        manifest = load_manifest(path)
    except DataError as exc:
        assert str(exc) and str(path) in str(exc)
    else:
        assert manifest.entries and all(len(entry.sha256) == 64 for entry in manifest.entries)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200))
def test_manifest_loader_on_any_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "manifest.toml"
    path.write_bytes(content)
    try:
        load_manifest(path)
    except DataError as exc:
        assert str(path) in str(exc)


def test_manifest_that_is_a_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be read"):
        load_manifest(tmp_path)
