"""GPU tools (nvidia-smi, rocm-smi, hipconfig) run as subprocesses with short timeouts, and pure parsers of
their output, so the tests can feed them real sample outputs. A missing tool is a result, never an exception."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOL_TIMEOUT_S = 10.0
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


def read_text(path: Path) -> str | None:
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


def find_field(fields: dict[str, Any], *patterns: str) -> Any:
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
    total_b = _number(find_field(fields, r"^VRAM Total Memory \(B\)"))
    used_b = _number(find_field(fields, r"^VRAM Total Used Memory \(B\)"))
    return {
        "index": index,
        "name": find_field(fields, r"^card series$", r"^device name$", r"^card model$"),
        "gfx_version": find_field(fields, r"^gfx version$"),
        "memory_total_mib": total_b / 2**20 if total_b is not None else None,
        "memory_used_mib": used_b / 2**20 if used_b is not None else None,
        "temperature_c": _number(find_field(fields, r"temperature.*junction", r"temperature.*hotspot", r"temperature.*edge")),
        "power_w": _number(find_field(fields, r"socket graphics package power", r"graphics package power")),
        "utilisation_pct": _number(find_field(fields, r"^GPU use \(%\)")),
        "sm_clock_mhz": _number(find_field(fields, r"^sclk clock speed")),
        "sm_clock_max_mhz": None,
        "mem_clock_mhz": _number(find_field(fields, r"^mclk clock speed")),
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


# --- AMD (amd-smi --json), preferred over rocm-smi where present --------------------------------------------

def _amd_value(node: Any) -> float | None:
    """amd-smi readings are {"value": v, "unit": u} or "N/A"; the number, or None."""
    if isinstance(node, dict):
        node = node.get("value")
    return _number(node) if node not in (None, "N/A") else None


def _amd_gpu_entries(data: Any) -> list[dict[str, Any]]:
    """amd-smi 26+ wraps the per-GPU objects in {"gpu_data": [...]}; older releases print the list itself."""
    entries = data.get("gpu_data", []) if isinstance(data, dict) else data
    return [entry for entry in entries or [] if isinstance(entry, dict) and "gpu" in entry]


def parse_amd_smi_metric(text: str) -> list[dict[str, Any]]:
    """GPUs from `amd-smi metric --json`, in the same fields as the other tools' readings."""
    gpus = []
    for entry in _amd_gpu_entries(json.loads(text)):
        usage, power = entry.get("usage") or {}, entry.get("power") or {}
        temperature, memory = entry.get("temperature") or {}, entry.get("mem_usage") or {}
        clocks = {str(key).lower(): value for key, value in (entry.get("clock") or {}).items() if isinstance(value, dict)}
        gfx, mem = clocks.get("gfx_0", {}), clocks.get("mem_0", {})
        peak = _amd_value(gfx.get("max_clk"))
        gpus.append({
            "index": int(entry["gpu"]),
            "name": None,
            "gfx_version": None,
            "memory_total_mib": _amd_value(memory.get("total_vram")),
            "memory_used_mib": _amd_value(memory.get("used_vram")),
            "temperature_c": _amd_value(temperature.get("hotspot")) or _amd_value(temperature.get("edge")),
            "power_w": _amd_value(power.get("socket_power")),
            "utilisation_pct": _amd_value(usage.get("gfx_activity")),
            "sm_clock_mhz": _amd_value(gfx.get("clk")),
            "sm_clock_max_mhz": peak if peak else None,  # some boards report 0 for an unknown maximum
            "mem_clock_mhz": _amd_value(mem.get("clk")),
            "mem_clock_max_mhz": _amd_value(mem.get("max_clk")) or None,
            "throttle_status": power.get("throttle_status"),
            "throttle_reasons": [],
        })
    return sorted(gpus, key=lambda gpu: gpu["index"])


def parse_amd_smi_processes(text: str) -> list[dict[str, Any]]:
    """`amd-smi process --json`: one entry per (GPU, process), with the GPU's index (unlike rocm-smi)."""
    processes = []
    for entry in _amd_gpu_entries(json.loads(text)):
        for item in entry.get("process_list") or []:
            info = item.get("process_info") if isinstance(item, dict) else None
            if not isinstance(info, dict) or _number(info.get("pid")) is None:
                continue  # "No running processes detected"
            vram = _amd_value((info.get("memory_usage") or {}).get("vram_mem"))
            processes.append({"gpu": None, "gpu_index": int(entry["gpu"]), "pid": int(_number(info["pid"]) or 0),
                              "name": info.get("name"), "memory_mib": vram / 2**20 if vram is not None else None})
    return processes


def amd_smi_gpus() -> tuple[list[dict[str, Any]], ToolResult]:
    result = run_tool(["amd-smi", "metric", "--json"])
    if not result.ok:
        return [], result
    try:
        return parse_amd_smi_metric(result.stdout), result
    except (json.JSONDecodeError, AttributeError, TypeError, KeyError, ValueError) as exc:
        return [], ToolResult("failed", result.stdout, f"unreadable amd-smi JSON: {exc}")


def amd_smi_processes() -> tuple[list[dict[str, Any]], ToolResult]:
    result = run_tool(["amd-smi", "process", "--json"])
    if not result.ok:
        return [], result
    try:
        return parse_amd_smi_processes(result.stdout), result
    except (json.JSONDecodeError, AttributeError, TypeError, KeyError, ValueError) as exc:
        return [], ToolResult("failed", result.stdout, f"unreadable amd-smi JSON: {exc}")


def parse_hipconfig_version(text: str) -> str | None:
    match = re.search(r"\d+\.\d+(?:\.\d+)?(?:[-.\w]*)", text)
    return match.group() if match else None


def rocm_version(rocm_root: Path = Path(os.environ.get("ROCM_PATH", "/opt/rocm"))) -> str | None:
    text = read_text(rocm_root / ".info" / "version")
    return text.strip() if text else None


# --- host, packages, container, git --------------------------------------------------------------
