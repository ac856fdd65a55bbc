"""Environment record and noise guards: what the run ran on, and whether the machine was quiet.

Everything here is best-effort and never raises: a missing tool is recorded as absent. Tools are called
as subprocesses with short timeouts (a hung `nvidia-smi` must not hang a benchmark); their output is
parsed by pure functions so the tests can feed them real sample outputs. Heavy packages (torch, vLLM)
are never imported: versions come from package metadata and torch's `version.py` read as text.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TOOL_TIMEOUT_S = 10.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_TXT = Path("/app/versions.txt")
NUMA_BALANCING = Path("/proc/sys/kernel/numa_balancing")
PACKAGES = (
    "torch", "vllm", "transformers", "tokenizers", "huggingface-hub", "safetensors", "accelerate",
    "triton", "pytorch-triton-rocm", "numpy", "scipy", "sentencepiece", "jinja2", "typer",
)
IMAGE_ENV_VARS = ("R2_IMAGE_REF", "R2_IMAGE_DIGEST", "R2_BASE_IMAGE", "R2_VARIANT", "R2_GIT_COMMIT", "R2_GIT_DIRTY")

# A GPU counts as busy enough for its clock to be judged above this utilisation; below it, a low
# clock is just power management at idle.
BUSY_UTILISATION_PCT = 50.0
THROTTLED_CLOCK_FRACTION = 0.8
NVIDIA_QUERY_BASE = (
    "index", "name", "uuid", "pci.bus_id", "driver_version", "memory.total", "memory.used",
    "temperature.gpu", "power.draw", "power.limit", "utilization.gpu",
    "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem",
)
NVIDIA_THROTTLE_FIELDS = (
    "clocks_throttle_reasons.active", "clocks_throttle_reasons.sw_power_cap",
    "clocks_throttle_reasons.hw_slowdown", "clocks_throttle_reasons.sw_thermal_slowdown",
    "clocks_throttle_reasons.hw_thermal_slowdown", "clocks_throttle_reasons.hw_power_brake_slowdown",
)
NVIDIA_APPS_QUERY = ("gpu_uuid", "pid", "process_name", "used_memory")
ROCM_SMI_TELEMETRY = ("--showtemp", "--showpower", "--showuse", "--showclocks", "--showmeminfo", "vram")
ROCM_SMI_STATIC = ("--showproductname", "--showmeminfo", "vram", "--showdriverversion")


# --- running tools -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolResult:
    """Outcome of one tool call: `status` is "ok", "absent", "failed" or "timeout"."""

    status: str
    stdout: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_tool(args: list[str], timeout_s: float = TOOL_TIMEOUT_S) -> ToolResult:
    if shutil.which(args[0]) is None:
        return ToolResult("absent", detail=f"{args[0]} not on PATH")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ToolResult("timeout", detail=f"{' '.join(args)} took longer than {timeout_s:g} s")
    except OSError as exc:
        return ToolResult("failed", detail=f"{args[0]}: {exc}")
    if proc.returncode != 0:
        return ToolResult("failed", proc.stdout, f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return ToolResult("ok", proc.stdout)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _number(raw: Any) -> float | None:
    """A float from tool text such as "132.0", "(2100Mhz)", "[N/A]"; None when there is no number."""
    if isinstance(raw, (int, float)):
        return float(raw)
    match = re.search(r"-?\d+(?:\.\d+)?", str(raw or ""))
    return float(match.group()) if match else None


# --- NVIDIA (nvidia-smi CSV) -------------------------------------------------------------------

def parse_nvidia_csv(text: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of `nvidia-smi --query-*=... --format=csv,noheader,nounits`, keyed by the queried fields."""
    rows = []
    for record in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not record or not any(cell.strip() for cell in record):
            continue
        rows.append({field: cell.strip() for field, cell in zip(fields, record)})
    return rows


def nvidia_gpu_from_row(row: dict[str, str]) -> dict[str, Any]:
    throttle = {
        key.removeprefix("clocks_throttle_reasons."): value
        for key, value in row.items()
        if key.startswith("clocks_throttle_reasons.") and key != "clocks_throttle_reasons.active"
    }
    return {
        "index": int(_number(row.get("index")) or 0),
        "name": row.get("name"),
        "uuid": row.get("uuid"),
        "pci_bus_id": row.get("pci.bus_id"),
        "driver_version": row.get("driver_version"),
        "memory_total_mib": _number(row.get("memory.total")),
        "memory_used_mib": _number(row.get("memory.used")),
        "temperature_c": _number(row.get("temperature.gpu")),
        "power_w": _number(row.get("power.draw")),
        "power_limit_w": _number(row.get("power.limit")),
        "utilisation_pct": _number(row.get("utilization.gpu")),
        "sm_clock_mhz": _number(row.get("clocks.sm")),
        "sm_clock_max_mhz": _number(row.get("clocks.max.sm")),
        "mem_clock_mhz": _number(row.get("clocks.mem")),
        "mem_clock_max_mhz": _number(row.get("clocks.max.mem")),
        "throttle_reasons_active": row.get("clocks_throttle_reasons.active"),
        "throttle_reasons": sorted(name for name, value in throttle.items() if value.lower() == "active"),
    }


def nvidia_gpus() -> tuple[list[dict[str, Any]], ToolResult]:
    # Older drivers reject the throttle fields as a whole query: fall back to the base fields.
    for fields in (NVIDIA_QUERY_BASE + NVIDIA_THROTTLE_FIELDS, NVIDIA_QUERY_BASE):
        result = run_tool(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
        if result.ok:
            return [nvidia_gpu_from_row(row) for row in parse_nvidia_csv(result.stdout, fields)], result
        if result.status in ("absent", "timeout"):
            break
    return [], result


def nvidia_processes() -> tuple[list[dict[str, Any]], ToolResult]:
    result = run_tool(["nvidia-smi", f"--query-compute-apps={','.join(NVIDIA_APPS_QUERY)}", "--format=csv,noheader,nounits"])
    rows = parse_nvidia_csv(result.stdout, NVIDIA_APPS_QUERY) if result.ok else []
    return [
        {"gpu": row.get("gpu_uuid"), "pid": int(_number(row.get("pid")) or 0), "name": row.get("process_name"),
         "memory_mib": _number(row.get("used_memory"))}
        for row in rows
    ], result


def parse_nvidia_cuda_version(text: str) -> str | None:
    """The driver's CUDA version from the banner of plain `nvidia-smi`."""
    match = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return match.group(1) if match else None


# --- AMD (rocm-smi --json) ---------------------------------------------------------------------

def _card_index(key: str) -> int | None:
    match = re.fullmatch(r"card(\d+)", key)
    return int(match.group(1)) if match else None


def _find(fields: dict[str, Any], *patterns: str) -> Any:
    """The first value whose key matches one of the regexes, case-insensitively (key names vary by ROCm release)."""
    for pattern in patterns:
        for key, value in fields.items():
            if re.search(pattern, key, re.IGNORECASE):
                return value
    return None


def parse_rocm_smi_clkfrq(text: str) -> dict[int, dict[str, float]]:
    """Highest supported frequency per GPU and clock from plain `rocm-smi --showclkfrq`.

    Its --json form keys the levels by number only, so the levels of different clocks overwrite one
    another; the text form keeps them under "Supported <clock> frequencies on GPU<n>" headings.
    """
    peaks: dict[int, dict[str, float]] = {}
    clock: str | None = None
    for line in text.splitlines():
        gpu_match = re.match(r"\s*GPU\[(\d+)\]\s*:\s*(.*)$", line)
        if not gpu_match:
            continue
        gpu, body = int(gpu_match.group(1)), gpu_match.group(2)
        heading = re.match(r"Supported (\w+) frequencies", body)
        if heading:
            clock = heading.group(1)
            continue
        level = re.match(r"\d+:\s*(\d+(?:\.\d+)?)\s*Mhz", body, re.IGNORECASE)
        if level and clock:
            mhz = float(level.group(1))
            peaks.setdefault(gpu, {})[clock] = max(mhz, peaks.get(gpu, {}).get(clock, 0.0))
    return peaks


def rocm_gpu_from_fields(index: int, fields: dict[str, Any]) -> dict[str, Any]:
    total_b = _number(_find(fields, r"^VRAM Total Memory \(B\)"))
    used_b = _number(_find(fields, r"^VRAM Total Used Memory \(B\)"))
    return {
        "index": index,
        "name": _find(fields, r"^card series$", r"^device name$", r"^card model$"),
        "gfx_version": _find(fields, r"^gfx version$"),
        "memory_total_mib": total_b / 2**20 if total_b is not None else None,
        "memory_used_mib": used_b / 2**20 if used_b is not None else None,
        "temperature_c": _number(_find(fields, r"temperature.*junction", r"temperature.*hotspot", r"temperature.*edge")),
        "power_w": _number(_find(fields, r"socket graphics package power", r"graphics package power")),
        "utilisation_pct": _number(_find(fields, r"^GPU use \(%\)")),
        "sm_clock_mhz": _number(_find(fields, r"^sclk clock speed")),
        "sm_clock_max_mhz": None,
        "mem_clock_mhz": _number(_find(fields, r"^mclk clock speed")),
        "mem_clock_max_mhz": None,
        "throttle_reasons": [],
    }


def parse_rocm_smi_json(text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """GPUs (one per `cardN` key) and the `system` table of `rocm-smi ... --json`."""
    data = json.loads(text)
    gpus = [
        rocm_gpu_from_fields(index, fields)
        for key, fields in data.items()
        if (index := _card_index(key)) is not None and isinstance(fields, dict)
    ]
    return sorted(gpus, key=lambda gpu: gpu["index"]), data.get("system", {}) or {}


def parse_rocm_smi_pids(system: dict[str, Any]) -> list[dict[str, Any]]:
    """`rocm-smi --showpids --json` lists `"PID<n>": "name, gpus, vram bytes, sdma, cu occupancy"` under `system`."""
    processes = []
    for key, value in system.items():
        match = re.fullmatch(r"PID(\d+)", key)
        if not match:
            continue
        parts = [part.strip() for part in str(value).split(",")]
        vram = _number(parts[2]) if len(parts) > 2 else None
        processes.append({
            "gpu": None, "pid": int(match.group(1)), "name": parts[0] if parts else None,
            "memory_mib": vram / 2**20 if vram is not None else None,
        })
    return processes


def rocm_gpus(flags: tuple[str, ...] = ROCM_SMI_TELEMETRY) -> tuple[list[dict[str, Any]], dict[str, Any], ToolResult]:
    result = run_tool(["rocm-smi", *flags, "--json"])
    if not result.ok:
        return [], {}, result
    try:
        gpus, system = parse_rocm_smi_json(result.stdout)
    except (json.JSONDecodeError, AttributeError) as exc:
        return [], {}, ToolResult("failed", result.stdout, f"unreadable rocm-smi JSON: {exc}")
    return gpus, system, result


def add_rocm_peak_clocks(gpus: list[dict[str, Any]], peaks: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    return [
        {**gpu, "sm_clock_max_mhz": peaks.get(gpu["index"], {}).get("sclk"),
         "mem_clock_max_mhz": peaks.get(gpu["index"], {}).get("mclk")}
        for gpu in gpus
    ]


def rocm_processes() -> tuple[list[dict[str, Any]], ToolResult]:
    result = run_tool(["rocm-smi", "--showpids", "--json"])
    if not result.ok:
        return [], result
    try:
        return parse_rocm_smi_pids(json.loads(result.stdout).get("system", {}) or {}), result
    except (json.JSONDecodeError, AttributeError) as exc:
        return [], ToolResult("failed", result.stdout, f"unreadable rocm-smi JSON: {exc}")


def parse_hipconfig_version(text: str) -> str | None:
    match = re.search(r"\d+\.\d+(?:\.\d+)?(?:[-.\w]*)", text)
    return match.group() if match else None


def rocm_version(rocm_root: Path = Path(os.environ.get("ROCM_PATH", "/opt/rocm"))) -> str | None:
    text = _read_text(rocm_root / ".info" / "version")
    return text.strip() if text else None


# --- host, packages, container, git --------------------------------------------------------------

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
    text = _read_text(Path(next(iter(spec.submodule_search_locations))) / "version.py")
    return parse_torch_build(text or "")


def container_info(root: Path = Path("/")) -> dict[str, Any]:
    cgroup = _read_text(root / "proc" / "1" / "cgroup") or ""
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
            "driver_version": _find(system, r"^driver version$"),
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
    versions_txt = _read_text(VERSIONS_TXT)
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "cpu": {"model": parse_cpu_model(_read_text(Path("/proc/cpuinfo")) or "") or platform.processor() or None,
                "logical_cores": os.cpu_count(),
                "memory_gib": parse_meminfo_total_gib(_read_text(Path("/proc/meminfo")) or "")},
        "accelerators": accelerator_inventory(),
        "runtime": runtime_versions(),
        "packages": package_versions(),
        "image_versions_txt": versions_txt.strip() if versions_txt else None,
        "container": container_info(),
        "numa_balancing": parse_numa_balancing(_read_text(NUMA_BALANCING)),
        "git": git_state(),
    }


def _ancestors(pid: int, proc: Path = Path("/proc")) -> set[int]:
    chain: set[int] = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        stat = _read_text(proc / str(pid) / "stat")
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
