"""Noise guards and environment record that stay right inside a container: GPUs in use only, the run's own
processes never counted as noise (PIDs from another namespace), telemetry sampled while work runs, and the
performance-relevant environment recorded. A fake /proc is built from real files and symlinks."""

from __future__ import annotations

import time
from pathlib import Path

from artifact.measure import environment as env


def _process(proc: Path, pid: int, parent: int, devices: tuple[str, ...] = ()) -> None:
    folder = proc / str(pid)
    (folder / "fd").mkdir(parents=True)
    (folder / "stat").write_text(f"{pid} (python3 x) S {parent} 1 1 0 -1\n", encoding="utf-8")
    for number, device in enumerate(devices):
        (folder / "fd" / str(number)).symlink_to(device)


def test_processes_are_attributed_by_namespace_and_gpu_handles(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _process(proc, 10, 1, ("/dev/kfd", "/dev/dri/renderD128"))  # this run
    _process(proc, 11, 10, ("/dev/kfd",))  # its vLLM engine core
    _process(proc, 12, 10)  # a child without the GPU
    _process(proc, 20, 1, ("/dev/nvidia0",))  # another program here, on the GPU
    _process(proc, 30, 1)  # a container process whose number collides with a host PID
    assert env.own_gpu_processes(10, proc) == [10, 11]
    listed = [{"pid": pid, "name": f"p{pid}"} for pid in (10, 11, 20, 30, 4242)]
    marked = env.mark_own_processes(listed, own_pid=10, proc=proc)
    assert [process["owner"] for process in marked] == ["this run", "this run", "other", "unattributed", "unattributed"]
    assert [process["own"] for process in marked] == [True, True, False, False, False]


def _gpu(index: int, clock: float) -> dict:
    return {"index": index, "sm_clock_mhz": clock, "sm_clock_max_mhz": 2100.0, "utilisation_pct": 100.0,
            "throttle_reasons": []}


def test_noise_warnings_look_only_at_the_gpus_in_use_and_count_unattributed_processes() -> None:
    quiet = {"numa_balancing": 0, "accelerators": {"vendor": "amd"}, "runtime": {}}
    throttled_gpu_1 = {"label": "during trials", "gpus": [_gpu(0, 2100.0), _gpu(1, 900.0)], "processes": []}
    assert env.noise_warnings(quiet, [{**throttled_gpu_1, "devices_in_use": [0]}]) == []
    (warning,) = env.noise_warnings(quiet, [{**throttled_gpu_1, "devices_in_use": None}])
    assert "GPU 1" in warning and "during trials" in warning

    # In a container: the tool lists host PIDs (unattributed); this run holds two processes on the GPU.
    host_pids = [{"pid": 5001, "name": "python3", "owner": "unattributed", "own": False},
                 {"pid": 5002, "name": "VLLM::EngineCore", "owner": "unattributed", "own": False}]
    ours = {"label": "before", "gpus": [], "processes": host_pids, "own_gpu_processes": 2}
    assert env.noise_warnings(quiet, [ours]) == []
    crowded = {**ours, "processes": [*host_pids, {"pid": 6000, "name": "rvs", "owner": "unattributed"}]}
    (warning,) = env.noise_warnings(quiet, [crowded])
    assert warning.startswith("1 more process(es) on the GPU at 'before'") and "holds 2" in warning
    # NVIDIA: a process on a GPU the run does not use is not noise.
    elsewhere = {"label": "before", "gpus": [], "devices_in_use": [0],
                 "processes": [{"pid": 7, "name": "train", "owner": "other", "gpu_index": 3}]}
    assert env.noise_warnings(quiet, [elsewhere]) == []
    assert env.noise_warnings(quiet, [{**elsewhere, "devices_in_use": [3]}]) == [
        "other processes on the GPU at 'before': train (pid 7)"]


def test_devices_in_use_and_runtime() -> None:
    assert env.devices_in_use({"HIP_VISIBLE_DEVICES": "2,3", "CUDA_VISIBLE_DEVICES": "0"}) == [2, 3]
    assert env.devices_in_use({"CUDA_VISIBLE_DEVICES": "1"}) == [1]
    assert env.devices_in_use({"CUDA_VISIBLE_DEVICES": "GPU-5f1e"}) is None
    assert env.devices_in_use({}) is None
    assert env.device_runtime({"hip": "7.2.53211", "cuda": None}) == "rocm"
    assert env.device_runtime({"hip": None, "cuda": "13.0"}) == "cuda"
    assert env.device_runtime({"hip": None, "cuda": None}) == "cpu"


def test_performance_environment_keeps_runtime_knobs_and_drops_secrets() -> None:
    environ = {"VLLM_ROCM_USE_AITER": "1", "HSA_NO_SCRATCH_RECLAIM": "1", "HIP_VISIBLE_DEVICES": "0",
               "PYTORCH_TUNABLEOP_ENABLED": "1", "VLLM_API_KEY": "sk-secret", "HF_TOKEN": "hf_x", "HOME": "/home/r2"}
    assert env.performance_environment(environ) == {
        "HIP_VISIBLE_DEVICES": "0", "HSA_NO_SCRATCH_RECLAIM": "1", "PYTORCH_TUNABLEOP_ENABLED": "1",
        "VLLM_ROCM_USE_AITER": "1"}


def test_environment_record_names_device_runtime_variables_and_attention(monkeypatch) -> None:
    monkeypatch.setenv("VLLM_ATTENTION_BACKEND", "ROCM_AITER_FA")
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    record = env.capture_environment()
    assert record["device_runtime"] == env.device_runtime(record["runtime"]["torch_build"])
    assert record["environment_variables"]["VLLM_ATTENTION_BACKEND"] == "ROCM_AITER_FA"
    assert record["attention_backend"] == {"VLLM_ATTENTION_BACKEND": "ROCM_AITER_FA", "selection": "as requested"}
    assert record["devices_in_use"] == [1]


def test_telemetry_is_sampled_while_work_runs() -> None:
    snapshots: list[dict] = []
    with env.TelemetrySampler(snapshots.append, "during trials", interval_s=0.05):
        time.sleep(0.4)
    count = len(snapshots)
    assert count >= 2 and {snapshot["label"] for snapshot in snapshots} == {"during trials"}
    assert all("devices_in_use" in snapshot and "tools" in snapshot for snapshot in snapshots)
    time.sleep(0.15)
    assert len(snapshots) == count  # the thread stopped with the block


# amd-smi 26 output, cut down from real `amd-smi metric --json` / `amd-smi process --json` dumps (MI-series and
# Radeon boards): the {"value", "unit"} wrapping, "N/A" for absent readings, gfx_N clocks, throttle_status.
AMD_SMI_METRIC = """{"gpu_data": [
 {"gpu": 0, "usage": {"gfx_activity": {"value": 100, "unit": "%"}, "umc_activity": {"value": 0, "unit": "%"}},
  "power": {"socket_power": {"value": 655, "unit": "W"}, "gfx_voltage": {"value": "N/A", "unit": "mV"},
            "power_management": "ENABLED", "throttle_status": "UNTHROTTLED"},
  "clock": {"gfx_0": {"clk": {"value": 1312, "unit": "MHz"}, "min_clk": {"value": 500, "unit": "MHz"},
                      "max_clk": {"value": 2100, "unit": "MHz"}, "clk_locked": "N/A", "deep_sleep": "DISABLED"},
            "gfx_1": {"clk": "N/A", "min_clk": "N/A", "max_clk": "N/A", "clk_locked": "N/A", "deep_sleep": "N/A"},
            "mem_0": {"clk": {"value": 1300, "unit": "MHz"}, "max_clk": {"value": 1300, "unit": "MHz"}}},
  "temperature": {"edge": "N/A", "hotspot": {"value": 71, "unit": "C"}, "mem": {"value": 58, "unit": "C"}},
  "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"}, "used_vram": {"value": 171230, "unit": "MB"}}},
 {"gpu": 1, "usage": {"gfx_activity": {"value": 0, "unit": "%"}},
  "power": {"socket_power": {"value": 140, "unit": "W"}, "throttle_status": "UNTHROTTLED"},
  "clock": {"gfx_0": {"clk": {"value": 142, "unit": "MHz"}, "max_clk": {"value": 0, "unit": "MHz"}}},
  "temperature": {"hotspot": {"value": 40, "unit": "C"}},
  "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"}, "used_vram": {"value": 283, "unit": "MB"}}}
]}"""
AMD_SMI_PROCESS = """[
 {"gpu": 0, "process_list": [
   {"process_info": {"name": "/usr/bin/python3.12", "pid": 213952,
     "memory_usage": {"gtt_mem": {"value": 8268000, "unit": "B"}, "cpu_mem": {"value": 0, "unit": "B"},
                      "vram_mem": {"value": 21008920000, "unit": "B"}},
     "mem_usage": {"value": 21589852160, "unit": "B"}, "cu_occupancy": "N/A"}}]},
 {"gpu": 1, "process_list": [{"process_info": "No running processes detected"}]}
]"""


def test_amd_smi_readings_and_processes() -> None:
    from artifact.measure import gpu_tools

    busy, idle = gpu_tools.parse_amd_smi_metric(AMD_SMI_METRIC)
    assert busy["index"] == 0 and busy["utilisation_pct"] == 100 and busy["power_w"] == 655
    assert busy["sm_clock_mhz"] == 1312 and busy["sm_clock_max_mhz"] == 2100 and busy["temperature_c"] == 71
    assert busy["memory_used_mib"] == 171230 and busy["throttle_status"] == "UNTHROTTLED"
    assert idle["sm_clock_max_mhz"] is None  # a maximum of 0 means unknown
    # The noise guard's rule applies unchanged: 1312 of 2100 MHz at 100% is below 80% of the peak.
    assert "1312 MHz" in env.throttling_seen(busy) and env.throttling_seen(idle) is None
    (process,) = gpu_tools.parse_amd_smi_processes(AMD_SMI_PROCESS)
    assert process == {"gpu": None, "gpu_index": 0, "pid": 213952, "name": "/usr/bin/python3.12",
                       "memory_mib": 21008920000 / 2**20}
    # The older releases print the list without the {"gpu_data": ...} wrapper.
    import json
    unwrapped = json.dumps(json.loads(AMD_SMI_METRIC)["gpu_data"])
    assert gpu_tools.parse_amd_smi_metric(unwrapped) == [busy, idle]
