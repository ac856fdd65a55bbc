#!/usr/bin/env python3
"""Pre-fetch the Hub models of experiment configs, at their pinned revisions, into the Hugging Face cache.

Used by the Dockerfile (so the image runs with HF_HUB_OFFLINE=1) and by CI. Models with real weights
are fetched whole (safetensors preferred); models with synthetic weights only need config.json and the
tokenizer files. Local and embedded models need nothing.

The Hub token is read from a file (the BuildKit secret mount /run/secrets/hf_token in the image) and
never printed. `--mirror DIR` copies `DIR/<owner>/<name>/` into the cache layout instead of downloading,
so the step can run offline.

    python scripts/prefetch_models.py --config r2-swallow-7b --dry-run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

DEFAULT_TOKEN_FILE = "/run/secrets/hf_token"
REVISION = re.compile(r"^[0-9a-f]{40}$")
# Enough to build a tokenizer and a shape-faithful model: no weight files.
METADATA_PATTERNS = (
    "*.json", "tokenizer.model", "*.tiktoken", "*.txt", "*.py",
)
# Hub repos often hold the same weights in several formats; when safetensors exist, the others are skipped.
DUPLICATE_WEIGHT_PATTERNS = ("*.bin", "*.pth", "*.pt", "*.msgpack", "*.h5", "*.onnx", "original/*")


@dataclass(frozen=True)
class Download:
    repo: str
    revision: str
    weights: str  # "real" or "synthetic"

    @property
    def allow_patterns(self) -> list[str] | None:
        return None if self.weights == "real" else list(METADATA_PATTERNS)

    def describe(self) -> str:
        what = "all files, safetensors preferred" if self.weights == "real" else "config and tokenizer files only"
        return f"{self.repo}@{self.revision} ({self.weights} weights: {what})"


def ignore_patterns_for(download: Download, files: list[str]) -> list[str] | None:
    """Skip duplicate weight formats, but only when safetensors are there to replace them."""
    if download.weights != "real" or not any(name.endswith(".safetensors") for name in files):
        return None
    return list(DUPLICATE_WEIGHT_PATTERNS)


class PrefetchError(Exception):
    """A model cannot be fetched; the message says which and why."""


def plan_downloads(models: list[tuple[str | None, str | None, str]]) -> list[Download]:
    """The downloads for (repo, revision, weights) triples: Hub models only, deduplicated, real over synthetic."""
    plan: dict[tuple[str, str], Download] = {}
    for repo, revision, weights in models:
        if not repo:
            continue
        if not revision or not REVISION.match(revision):
            raise PrefetchError(f"{repo}: revision must be a pinned 40-hex commit SHA, got {revision!r}")
        if weights not in ("real", "synthetic"):
            raise PrefetchError(f"{repo}: weights must be 'real' or 'synthetic', got {weights!r}")
        key = (repo, revision)
        if key not in plan or weights == "real":
            plan[key] = Download(repo, revision, weights)
    return list(plan.values())


CONFIGS_DIR = Path(__file__).resolve().parent.parent / "artifact" / "configs"


def models_of_plain_toml(names: list[str], configs_dir: Path = CONFIGS_DIR) -> list[tuple[str | None, str | None, str]]:
    """The [[models]] of each config read as plain TOML, without the project's code.

    The image build uses this before the project is copied in, so that a code change does not invalidate the
    layer holding the model files. A name is a shipped config (configs_dir/NAME.toml) or a TOML path; the
    fields read are the ones load_config reads (repo, revision, weights defaulting to "real"), and a test checks
    that both readers agree on every shipped config.
    """
    import tomllib

    models: list[tuple[str | None, str | None, str]] = []
    for name in names:
        path = Path(name) if name.endswith(".toml") else configs_dir / f"{name}.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PrefetchError(f"config {name!r}: cannot read {path} ({exc})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise PrefetchError(f"config {name!r}: {path} is not valid TOML ({exc})") from exc
        for index, table in enumerate(data.get("models", [])):
            if not isinstance(table, dict):
                raise PrefetchError(f"{path}: [[models]] entry {index + 1} is not a table")
            models.append((table.get("repo"), table.get("revision"), table.get("weights", "real")))
    return models


def metadata_only(models: list[tuple[str | None, str | None, str]]) -> list[tuple[str | None, str | None, str]]:
    """Every model as if its weights were synthetic: config and tokenizer files only (megabytes)."""
    return [(repo, revision, "synthetic") for repo, revision, _ in models]


def models_of_configs(names: list[str]) -> list[tuple[str | None, str | None, str]]:
    from artifact.config import load_config

    return [(model.repo, model.revision, model.weights) for name in names for model in load_config(name).models]


def split_names(values: list[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def read_token(path: Path | None) -> str | None:
    """The token in the file, or None when there is no file (public models need none)."""
    if path is None or not path.is_file():
        return None
    token = path.read_text(encoding="utf-8").strip()
    return token or None


def selected(files: list[str], download: Download) -> list[str]:
    """The repo files the download keeps, with the same glob rules snapshot_download applies."""
    ignore = ignore_patterns_for(download, files) or []
    allow = download.allow_patterns
    return [
        name for name in files
        if (allow is None or any(fnmatch(name, pattern) for pattern in allow))
        and not any(fnmatch(name, pattern) for pattern in ignore)
    ]


def copy_from_mirror(download: Download, mirror: Path, cache_dir: Path) -> Path:
    """Lay a mirrored repo folder out as the Hub cache does, so offline loads by revision find it."""
    source = mirror / download.repo
    if not source.is_dir():
        raise PrefetchError(f"{download.repo}: not in the mirror (expected the folder {source})")
    repo_dir = cache_dir / f"models--{download.repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / download.revision
    files = sorted(path.relative_to(source).as_posix() for path in source.rglob("*") if path.is_file())
    for relative in selected(files, download):
        target = snapshot / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target)
    if not snapshot.is_dir():
        raise PrefetchError(f"{download.repo}: the mirror folder {source} has no files to fetch")
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(download.revision, encoding="utf-8")
    return snapshot


def fetch_from_hub(download: Download, token: str | None, cache_dir: Path | None) -> Path:
    from huggingface_hub import list_repo_files, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        files = list_repo_files(download.repo, revision=download.revision, token=token)
        path = snapshot_download(
            repo_id=download.repo, revision=download.revision, token=token,
            cache_dir=str(cache_dir) if cache_dir else None,
            allow_patterns=download.allow_patterns, ignore_patterns=ignore_patterns_for(download, files),
        )
    except GatedRepoError as exc:
        hint = "the token's account has not been granted access" if token else "no token was given (BuildKit secret hf_token)"
        raise PrefetchError(f"{download.repo} is gated and {hint}: accept its licence on the Hub, then pass a token") from exc
    except RevisionNotFoundError as exc:
        raise PrefetchError(f"{download.repo}: revision {download.revision} does not exist on the Hub") from exc
    except RepositoryNotFoundError as exc:
        raise PrefetchError(f"{download.repo}: no such repository (or it is private and the token cannot see it)") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise PrefetchError(f"{download.repo}@{download.revision}: download failed: {one_line(exc)}") from exc
    except Exception as exc:  # the HTTP client's own errors (connect, timeout) are not huggingface_hub types
        raise PrefetchError(f"{download.repo}@{download.revision}: download failed ({type(exc).__name__}: {one_line(exc)})") from exc
    return Path(path)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def hub_unreachable_reason(timeout_s: float = 10) -> str | None:
    """Why the Hub cannot be reached (offline mode, no network), or None when it answers.

    Asked once before any download, so an offline machine gets one line instead of five retries per model.
    """
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        urllib.request.urlopen(f"{constants.ENDPOINT}/api/models?limit=1", timeout=timeout_s).close()  # noqa: S310
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{constants.ENDPOINT} does not answer ({one_line(reason if isinstance(reason, BaseException) else exc)})"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, metavar="NAME_OR_PATH",
                        help="experiment config (shipped name or TOML path); repeat, or separate with commas, for several")
    parser.add_argument("--token-file", type=Path, default=Path(os.environ.get("HF_TOKEN_FILE", DEFAULT_TOKEN_FILE)),
                        help=f"file holding the Hub token (default: $HF_TOKEN_FILE or {DEFAULT_TOKEN_FILE}); absent is fine for public models")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Hub cache folder (default: huggingface_hub's, i.e. $HF_HOME/hub)")
    parser.add_argument("--mirror", type=Path, default=None, help="copy DIR/<owner>/<name>/ instead of downloading (offline)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched, fetch nothing")
    parser.add_argument("--plain-toml", action="store_true",
                        help="read the configs' [[models]] as plain TOML, without importing the project (image build)")
    parser.add_argument("--metadata-only", action="store_true",
                        help="configs and tokenizers only, even for models with real weights (megabytes, not gigabytes)")
    return parser.parse_args(argv)


def default_cache_dir() -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    errors: tuple[type[Exception], ...] = (PrefetchError,)
    try:
        if args.plain_toml:
            models = models_of_plain_toml(split_names(args.config))
        else:
            from artifact.errors import ArtifactError

            errors = (ArtifactError, PrefetchError)
            models = models_of_configs(split_names(args.config))
        downloads = plan_downloads(metadata_only(models) if args.metadata_only else models)
    except errors as exc:
        print(f"prefetch: {exc}", file=sys.stderr)
        return 2
    if not downloads:
        print(f"prefetch: no Hub models in {', '.join(args.config)}: nothing to fetch")
        return 0
    if not args.dry_run and not args.mirror and (reason := hub_unreachable_reason()):
        print(f"prefetch: the Hugging Face Hub cannot be reached: {reason}. Not fetched: "
              f"{', '.join(download.repo for download in downloads)}. Run this step where the Hub answers, or copy "
              "the model folders there and use --mirror DIR (a folder of <owner>/<name>/ copies).", file=sys.stderr)
        return 1
    failed: list[str] = []
    for download in downloads:
        print(f"{'would fetch' if args.dry_run else 'fetching'} {download.describe()}", flush=True)
        if args.dry_run:
            continue
        try:
            if args.mirror:
                path = copy_from_mirror(download, args.mirror, args.cache_dir or default_cache_dir())
            else:
                path = fetch_from_hub(download, read_token(args.token_file), args.cache_dir)
        except PrefetchError as exc:
            print(f"prefetch: {exc}", file=sys.stderr)
            failed.append(download.repo)
            continue
        print(f"  -> {path}", flush=True)
    if failed:
        print(f"prefetch: {len(failed)} of {len(downloads)} models not fetched: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
