"""External data files: the manifest, and a verified local path for each entry.

Nothing the artifact measures is committed to the repository: every corpus and tokenizer file is
declared in `dataset/manifest.toml` with its pinned source URL and sha256, and reaches the code
through `resolve_data_file`, which returns a path only after the hash matched. There are three
places a file can come from, tried in this order:

1. a mirror folder (`--data-mirror DIR` or env `R2_DATA_MIRROR`) laid out like the manifest's
   `filename` fields, read in place and never copied (CI points it at `../shared/data`);
2. the cache (`~/.cache/r2-artifact/data`, or `$R2_CACHE_DIR/data`), filled by earlier downloads;
3. a download from the pinned URL (pooch: streamed to a temporary file in the cache folder, moved into
   place only after its sha256 matched, so the cache never holds a partial or corrupt file).

`fetch_all` tries every entry and reports every file that failed, not only the first.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from artifact.errors import DataError
from artifact.paths import cache_dir, dataset_dir

ENV_DATASET_DIR = "R2_DATASET_DIR"
ENV_DATA_MIRROR = "R2_DATA_MIRROR"
ENV_CACHE_DIR = "R2_CACHE_DIR"
MANIFEST_NAME = "manifest.toml"
REQUIRED_FIELDS = (
    "id",
    "url",
    "revision",
    "path_in_repo",
    "sha256",
    "license",
    "filename",
    "loader",
)
_DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class ManifestEntry:
    """One external file: where it comes from, what it must hash to, and who reads it."""

    id: str
    url: str
    revision: str
    path_in_repo: str
    sha256: str
    license: str
    filename: str
    loader: str
    repo: str | None = None


@dataclass(frozen=True)
class Manifest:
    """All entries of a manifest file, in file order, looked up by id."""

    path: Path
    entries: tuple[ManifestEntry, ...]

    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]

    def get(self, entry_id: str) -> ManifestEntry:
        """Return the entry `entry_id`; an unknown id is a user error listing the valid ones."""
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise DataError(
            f"No data file {entry_id!r} in {self.path}. Known ids: {', '.join(self.ids())}."
        )

    def by_loader(self, loader: str) -> ManifestEntry:
        """Return the single entry read by corpus loader `loader`."""
        for entry in self.entries:
            if entry.loader == loader:
                return entry
        raise DataError(f"No entry with loader = {loader!r} in {self.path}.")


@dataclass(frozen=True)
class FetchedFile:
    """A verified local file and how it was obtained ("mirror", "cache" or "download")."""

    id: str
    path: Path
    source: str
    size_bytes: int


def cache_root() -> Path:
    """Where downloads are kept: `<cache>/data` (the cache root is `R2_CACHE_DIR`, else ~/.cache/r2-artifact)."""
    return cache_dir() / "data"


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate the manifest (default `dataset_dir()/manifest.toml`).

    Validation happens here, once, so that every later error about a file can trust the entry's
    fields; a bad entry is reported with its position, its id when it has one, and the field.
    """
    manifest_path = path if path is not None else dataset_dir() / MANIFEST_NAME
    try:
        raw = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"Data manifest not found: {manifest_path}. Set {ENV_DATASET_DIR} to the folder that "
            f"holds {MANIFEST_NAME}."
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"Data manifest {manifest_path} is not UTF-8 text: {exc.reason} at byte {exc.start}.") from None
    except OSError as exc:
        raise DataError(f"Data manifest {manifest_path} cannot be read: {exc.strerror or exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"Data manifest {manifest_path} is not valid TOML: {exc}.") from None
    tables = raw.get("file")
    if not isinstance(tables, list) or not tables:
        raise DataError(
            f"Data manifest {manifest_path} has no [[file]] tables; each external file needs one."
        )
    entries = tuple(_parse_entry(table, index, manifest_path) for index, table in enumerate(tables))
    _check_unique_ids(entries, manifest_path)
    return Manifest(path=manifest_path, entries=entries)


def _parse_entry(table: object, index: int, manifest_path: Path) -> ManifestEntry:
    where = f"[[file]] #{index + 1}"
    if not isinstance(table, dict):
        raise DataError(f"{manifest_path}: {where} is not a table.")
    if isinstance(table.get("id"), str):
        where += f" (id = {table['id']!r})"
    for field in REQUIRED_FIELDS:
        value = table.get(field)
        if not isinstance(value, str) or not value.strip():
            raise DataError(
                f"{manifest_path}: {where} is missing field {field!r} (a non-empty string). "
                f"Every entry needs: {', '.join(REQUIRED_FIELDS)}."
            )
    sha = table["sha256"].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise DataError(
            f"{manifest_path}: {where} field 'sha256' must be 64 hex digits, got {table['sha256']!r}."
        )
    if Path(table["filename"]).is_absolute() or ".." in Path(table["filename"]).parts:
        raise DataError(
            f"{manifest_path}: {where} field 'filename' must be a relative path inside the mirror, "
            f"got {table['filename']!r}."
        )
    repo = table.get("repo")
    return ManifestEntry(
        id=table["id"],
        url=table["url"],
        revision=table["revision"],
        path_in_repo=table["path_in_repo"],
        sha256=sha,
        license=table["license"],
        filename=table["filename"],
        loader=table["loader"],
        repo=repo if isinstance(repo, str) else None,
    )


def _check_unique_ids(entries: tuple[ManifestEntry, ...], manifest_path: Path) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise DataError(f"{manifest_path}: id {entry.id!r} appears twice; ids must be unique.")
        seen.add(entry.id)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (pooch reads it in chunks, so large files do not sit in memory)."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def verify_sha256(path: Path, entry: ManifestEntry) -> None:
    """Refuse a file whose content is not the one the manifest pinned."""
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise DataError(
            f"sha256 mismatch for data file {entry.id!r} at {path}: expected {entry.sha256}, "
            f"got {actual}. The file is corrupt or a different version; delete it and run "
            f"`artifact fetch` again, or point --data-mirror at a correct copy."
        )


def resolve_data_file(
    entry_id: str,
    *,
    mirror: Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    manifest: Manifest | None = None,
) -> Path:
    """Return a local, hash-verified path for manifest entry `entry_id`.

    A mirror (argument, else env `R2_DATA_MIRROR`) is authoritative: when one is given the file must
    be there, so a typo in the mirror path is an error instead of a silent download.
    """
    return _resolve(entry_id, mirror, cache_dir, allow_download, manifest).path


def fetch_all(
    *,
    mirror: Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    manifest: Manifest | None = None,
) -> list[FetchedFile]:
    """Resolve every manifest entry (the `artifact fetch` command): afterwards runs work offline.

    Every entry is tried; when any failed, one DataError lists each failed file with its reason.
    """
    loaded = manifest if manifest is not None else load_manifest()
    fetched: list[FetchedFile] = []
    failures: list[str] = []
    for entry in loaded.entries:
        try:
            fetched.append(_resolve(entry.id, mirror, cache_dir, allow_download, loaded))
        except DataError as exc:
            failures.append(f"  - {exc}")
    if failures:
        raise DataError(
            f"{len(failures)} of {len(loaded.entries)} data files could not be fetched "
            f"({len(fetched)} are fine):\n" + "\n".join(failures)
        )
    return fetched


def _resolve(
    entry_id: str,
    mirror: Path | None,
    cache_dir: Path | None,
    allow_download: bool,
    manifest: Manifest | None,
) -> FetchedFile:
    entry = (manifest if manifest is not None else load_manifest()).get(entry_id)
    mirror_dir = mirror if mirror is not None else _env_path(ENV_DATA_MIRROR)
    if mirror_dir is not None:
        return _from_mirror(entry, mirror_dir)
    cached = (cache_dir if cache_dir is not None else cache_root()) / entry.filename
    if cached.is_file():
        verify_sha256(cached, entry)
        return FetchedFile(entry.id, cached, "cache", cached.stat().st_size)
    if not allow_download:
        raise DataError(
            f"Data file {entry.id!r} is not in the cache ({cached}) and downloads are off. Run "
            f"`artifact fetch`, or give a local copy with --data-mirror DIR / {ENV_DATA_MIRROR}."
        )
    _download(entry, cached)
    return FetchedFile(entry.id, cached, "download", cached.stat().st_size)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _from_mirror(entry: ManifestEntry, mirror_dir: Path) -> FetchedFile:
    path = mirror_dir / entry.filename
    if not path.is_file():
        raise DataError(
            f"Data file {entry.id!r} not found in mirror folder {mirror_dir} (expected {path}). "
            f"Check --data-mirror / {ENV_DATA_MIRROR}, or unset it to download from {entry.url}."
        )
    verify_sha256(path, entry)
    return FetchedFile(entry.id, path, "mirror", path.stat().st_size)


def _download(entry: ManifestEntry, target: Path) -> None:
    """Download `entry.url` to `target` with pooch; a file whose sha256 differs is deleted, never kept."""
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")  # our own messages say what is fetched and from where
    try:
        pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=target.name,
            path=target.parent,
            downloader=pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=_DOWNLOAD_TIMEOUT_S),
        )
    except ValueError as exc:  # pooch's hash mismatch (the download was deleted), or a URL it cannot fetch
        raise DataError(
            f"Download of data file {entry.id!r} from {entry.url} refused: {_one_line(exc)} Point "
            f"--data-mirror DIR / {ENV_DATA_MIRROR} at a correct copy, or check the manifest's sha256."
        ) from None
    except (requests.RequestException, OSError) as exc:
        raise DataError(
            f"Cannot download data file {entry.id!r} from {entry.url}: {_network_reason(exc)}. If this machine is "
            f"offline, give a folder holding {entry.filename} with --data-mirror DIR or {ENV_DATA_MIRROR}=DIR."
        ) from None


def _network_reason(exc: BaseException) -> str:
    """The root of a network error, short: requests nests the socket's text several wrappers deep."""
    import requests

    text = _one_line(exc)
    errno = re.search(r"\[Errno [^\]]*\] [^'\")(]*", text)
    if errno:
        return errno.group(0).strip()
    if isinstance(exc, requests.Timeout):
        return f"no answer within {_DOWNLOAD_TIMEOUT_S} s"
    return text if len(text) <= 300 else text[:300] + "..."


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (requests nests the socket error's text inside its own)."""
    return " ".join(str(exc).split()) or type(exc).__name__
