"""Environment record and noise guards: what the run ran on, and whether the machine was quiet.

Everything here is best-effort and never raises: a missing tool is recorded as absent. Tools are called
as subprocesses with short timeouts (a hung `nvidia-smi` must not hang a benchmark); their output is
parsed by pure functions so the tests can feed them real sample outputs. Heavy packages (torch, vLLM)
are never imported: versions come from package metadata and torch's `version.py` read as text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from artifact.measure.gpu_tools import (
    ROCM_SMI_STATIC,
    ToolResult,
    find_field,
    add_rocm_peak_clocks,
    nvidia_gpus,
    nvidia_processes,
    parse_hipconfig_version,
    parse_nvidia_cuda_version,
    parse_rocm_smi_clkfrq,
    read_text,
    rocm_gpus,
    rocm_processes,
    rocm_version,
    run_tool,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_TXT = Path("/app/versions.txt")
NUMA_BALANCING = Path("/proc/sys/kernel/numa_balancing")
PACKAGES = (
    "torch", "vllm", "transformers", "tokenizers", "huggingface-hub", "safetensors", "accelerate",
    "triton", "pytorch-triton-rocm", "numpy", "scipy", "sentencepiece", "jinja2", "typer",
)
# Written by scripts/setup_venv.sh into the environment it built from a lock (requirements/*.lock).
LOCK_RECORD = "r2-lock.json"
LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
IMAGE_ENV_VARS = ("R2_IMAGE_REF", "R2_IMAGE_DIGEST", "R2_BASE_IMAGE", "R2_VARIANT", "R2_GIT_COMMIT", "R2_GIT_DIRTY")

# A GPU counts as busy enough for its clock to be judged above this utilisation; below it, a low
# clock is just power management at idle.
BUSY_UTILISATION_PCT = 50.0
THROTTLED_CLOCK_FRACTION = 0.8
def parse_cpu_model(cpuinfo: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model name", "Hardware"):
            return value.strip()
    return None


def parse_meminfo_total_gib(meminfo: str) -> float | None:
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return round(int(match.group(1)) / 2**20, 1) if match else None


def parse_numa_balancing(text: str | None) -> int | None:
    """0 off, 1 on (2 = memory tiering mode on newer kernels); None when unreadable."""
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def parse_torch_build(version_py: str) -> dict[str, str | None]:
    """`cuda = '12.8'` / `hip = '6.4.43483'` lines of torch/version.py (read as text: importing torch is slow)."""
    def value(name: str) -> str | None:
        match = re.search(rf"^{name}\s*(?::\s*[^=]+)?=\s*['\"]([^'\"]*)['\"]", version_py, re.MULTILINE)
        return match.group(1) if match else None

    return {"cuda": value("cuda"), "hip": value("hip"), "git_version": value("git_version")}


def torch_build() -> dict[str, str | None]:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {"cuda": None, "hip": None, "git_version": None}
    text = read_text(Path(next(iter(spec.submodule_search_locations))) / "version.py")
    return parse_torch_build(text or "")


def container_info(root: Path = Path("/")) -> dict[str, Any]:
    cgroup = read_text(root / "proc" / "1" / "cgroup") or ""
    in_container = (
        (root / ".dockerenv").exists()
        or (root / "run" / ".containerenv").exists()
        or any(marker in cgroup for marker in ("docker", "kubepods", "containerd", "libpod"))
    )
    image = {name: os.environ.get(name) for name in IMAGE_ENV_VARS if os.environ.get(name)}
    return {"in_container": in_container, **image}


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the checkout; inside the image (no .git) the values baked in at build."""
    commit = run_tool(["git", "-C", str(root), "rev-parse", "HEAD"], timeout_s=5)
    if commit.ok:
        status = run_tool(["git", "-C", str(root), "status", "--porcelain"], timeout_s=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.ok else None, "source": "git"}
    baked = os.environ.get("R2_GIT_COMMIT")
    if baked:
        return {"commit": baked, "dirty": os.environ.get("R2_GIT_DIRTY") == "1", "source": "image build"}
    return {"commit": None, "dirty": None, "source": commit.detail or commit.status}


def locked_versions(lock_text: str) -> dict[str, str]:
    """`name==version` pins of a lock file (requirements/*.lock), names normalised as pip does."""
    pins: dict[str, str] = {}
    for line in lock_text.splitlines():
        match = LOCK_PIN.match(line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def lock_state(prefix: Path | None = None, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Which lock file this environment was installed from, and whether it still is what that lock says.

    `sha256` is the digest recorded at install time; `matches_checkout` compares it with the lock file in
    the checkout now (False: the lock changed since, run `make setup` again); `differs_from_lock` lists every
    locked package whose installed version is not the locked one (something was installed by hand).
    """
    record_path = (prefix if prefix is not None else Path(sys.prefix)) / LOCK_RECORD
    text = read_text(record_path)
    if text is None:
        return {"lock": None, "note": f"not installed from a lock ({record_path} absent)"}
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {"lock": None, "note": f"{record_path} is not valid JSON"}
    if not isinstance(record, dict) or not isinstance(record.get("lock"), str):
        return {"lock": None, "note": f"{record_path} does not name a lock file"}
    state: dict[str, Any] = {key: record.get(key) for key in ("lock", "sha256", "installer", "torch_source", "installed_at")}
    try:
        lock_bytes = (root / record["lock"]).read_bytes()
    except OSError:  # inside an image the checkout's lock files may not be there
        state["matches_checkout"] = None
        return state
    lock_text = lock_bytes.decode("utf-8", errors="replace")
    state["matches_checkout"] = hashlib.sha256(lock_bytes).hexdigest() == record.get("sha256")
    state["differs_from_lock"] = sorted(
        f"{name} {installed or 'missing'} (locked {locked})"
        for name, locked in locked_versions(lock_text).items()
        if (installed := _installed_version(name)) != locked
    )
    return state


# --- the records ---------------------------------------------------------------------------------

def accelerator_inventory() -> dict[str, Any]:
    gpus, result = nvidia_gpus()
    if gpus:
        banner = run_tool(["nvidia-smi"])
        return {
            "vendor": "nvidia", "tool": "nvidia-smi", "count": len(gpus),
            "names": sorted({gpu["name"] for gpu in gpus}),
            "memory_total_mib": [gpu["memory_total_mib"] for gpu in gpus],
            "driver_version": gpus[0]["driver_version"],
            "cuda_driver_version": parse_nvidia_cuda_version(banner.stdout) if banner.ok else None,
        }
    absent = {"nvidia-smi": result.status}
    gpus, system, rocm_result = rocm_gpus(ROCM_SMI_STATIC)
    if gpus:
        return {
            "vendor": "amd", "tool": "rocm-smi", "count": len(gpus),
            "names": sorted({str(gpu["name"]) for gpu in gpus}),
            "gfx_versions": sorted({str(gpu["gfx_version"]) for gpu in gpus if gpu["gfx_version"]}),
            "memory_total_mib": [gpu["memory_total_mib"] for gpu in gpus],
            "driver_version": find_field(system, r"^driver version$"),
        }
    absent["rocm-smi"] = rocm_result.status
    return {"vendor": None, "tool": None, "count": 0, "tools": absent}


def runtime_versions() -> dict[str, Any]:
    hip = run_tool(["hipconfig", "--version"], timeout_s=5)
    nvcc = run_tool(["nvcc", "--version"], timeout_s=5)
    nvcc_match = re.search(r"release ([\d.]+)", nvcc.stdout) if nvcc.ok else None
    return {
        "rocm": rocm_version(),
        "hip": parse_hipconfig_version(hip.stdout) if hip.ok else None,
        "cuda_toolkit": nvcc_match.group(1) if nvcc_match else None,
        "cuda_version_env": os.environ.get("CUDA_VERSION"),
        "torch_build": torch_build(),
    }


def capture_environment() -> dict[str, Any]:
    """The run's environment manifest (JSON-serialisable)."""
    versions_txt = read_text(VERSIONS_TXT)
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "cpu": {"model": parse_cpu_model(read_text(Path("/proc/cpuinfo")) or "") or platform.processor() or None,
                "logical_cores": os.cpu_count(),
                "memory_gib": parse_meminfo_total_gib(read_text(Path("/proc/meminfo")) or "")},
        "accelerators": accelerator_inventory(),
        "runtime": runtime_versions(),
        "packages": package_versions(),
        "lock": lock_state(),
        "image_versions_txt": versions_txt.strip() if versions_txt else None,
        "container": container_info(),
        "numa_balancing": parse_numa_balancing(read_text(NUMA_BALANCING)),
        "git": git_state(),
    }


def _ancestors(pid: int, proc: Path = Path("/proc")) -> set[int]:
    chain: set[int] = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        stat = read_text(proc / str(pid) / "stat")
        if not stat:
            break
        # The command name (field 2) may contain spaces; fields after the closing parenthesis are fixed.
        pid = int(stat.rpartition(")")[2].split()[1])
    return chain


def mark_own_processes(processes: list[dict[str, Any]], own_pid: int | None = None) -> list[dict[str, Any]]:
    """Flags processes that are this benchmark or its children (vLLM runs its engine in a child process)."""
    own = own_pid if own_pid is not None else os.getpid()
    return [{**process, "own": own in _ancestors(int(process["pid"]))} for process in processes]


def _tool_status(result: ToolResult) -> str:
    return result.status if result.status in ("ok", "absent") else f"{result.status}: {result.detail}"


def telemetry_snapshot(label: str) -> dict[str, Any]:
    """Per-GPU clocks, temperature, power, utilisation and the processes on the GPUs, right now."""
    snapshot: dict[str, Any] = {
        "label": label, "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "monotonic_s": time.monotonic(), "tool": None, "gpus": [], "processes": [], "tools": {},
    }
    gpus, result = nvidia_gpus()
    snapshot["tools"]["nvidia-smi"] = _tool_status(result)
    if gpus:
        processes, _ = nvidia_processes()
        snapshot.update(tool="nvidia-smi", gpus=gpus, processes=mark_own_processes(processes))
        return snapshot
    gpus, _, rocm_result = rocm_gpus()
    snapshot["tools"]["rocm-smi"] = _tool_status(rocm_result)
    if gpus:
        frequencies = run_tool(["rocm-smi", "--showclkfrq"])
        if frequencies.ok:
            gpus = add_rocm_peak_clocks(gpus, parse_rocm_smi_clkfrq(frequencies.stdout))
        processes, _ = rocm_processes()
        snapshot.update(tool="rocm-smi", gpus=gpus, processes=mark_own_processes(processes))
    return snapshot


# --- noise guards --------------------------------------------------------------------------------

def _is_rocm(environment: dict[str, Any]) -> bool:
    runtime = environment.get("runtime") or {}
    return (environment.get("accelerators") or {}).get("vendor") == "amd" or bool(
        runtime.get("rocm") or (runtime.get("torch_build") or {}).get("hip")
    )


def throttling_seen(gpu: dict[str, Any]) -> str | None:
    """Why this GPU reading shows throttling, or None."""
    if gpu.get("throttle_reasons"):
        return "throttle reasons active: " + ", ".join(gpu["throttle_reasons"])
    clock, peak, busy = gpu.get("sm_clock_mhz"), gpu.get("sm_clock_max_mhz"), gpu.get("utilisation_pct")
    if clock and peak and busy is not None and busy >= BUSY_UTILISATION_PCT and clock < THROTTLED_CLOCK_FRACTION * peak:
        return f"clock {clock:.0f} MHz < {THROTTLED_CLOCK_FRACTION:.0%} of max {peak:.0f} MHz at {busy:.0f}% utilisation"
    return None


def noise_warnings(environment: dict[str, Any], snapshots: list[dict[str, Any]]) -> list[str]:
    """Reasons to distrust the timings, for the report; empty when the machine looked quiet."""
    warnings: list[str] = []
    if environment.get("numa_balancing") and _is_rocm(environment):
        warnings.append(
            "NUMA balancing is on (/proc/sys/kernel/numa_balancing = "
            f"{environment['numa_balancing']}); AMD advises turning it off on MI300X hosts: "
            "sudo sysctl kernel.numa_balancing=0"
        )
    for snapshot in snapshots:
        for gpu in snapshot.get("gpus", []):
            reason = throttling_seen(gpu)
            if reason:
                warnings.append(f"clock throttling on GPU {gpu.get('index')} at '{snapshot.get('label')}': {reason}")
        others = [process for process in snapshot.get("processes", []) if not process.get("own")]
        if others:
            listed = ", ".join(f"{process.get('name')} (pid {process.get('pid')})" for process in others)
            warnings.append(f"other processes on the GPU at '{snapshot.get('label')}': {listed}")
    return list(dict.fromkeys(warnings))
