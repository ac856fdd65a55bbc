"""Roofline accounting: is the engine or the hardware setting the decode pace?

Decoding one step reads every weight the step uses once, plus the KV cache of every row up to its current
length. At batch sizes where decode is memory-bound, the fastest possible step takes
bytes read / memory bandwidth, so

    roofline tokens/s = batch x bandwidth / (weight bytes read + batch x context x KV bytes per token)

with the bandwidth measured on the device (a large device-to-device copy, bytes read + bytes written, the
way METHOD.md defines it). The input embedding is a gather (batch rows per step), not a full read, so only
those rows count. Achieved decode tokens/s over that gives the percentage of the roofline reached.
All functions but `measure_copy_bandwidth` are pure.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}


def measure_copy_bandwidth(device: Any = "cuda", *, gigabytes: float = 2.0, repeats: int = 10) -> dict[str, Any]:
    """Device-to-device copy bandwidth in GB/s (10^9 bytes), counting bytes read plus bytes written.

    CUDA: a `gigabytes` buffer copied `repeats` times, each timed with CUDA events after a warm-up copy; the
    median is reported. CPU: the same with a monotonic clock and a smaller buffer (a rough figure)."""
    import torch

    device = torch.device(device)
    cuda = device.type == "cuda"
    size = int(gigabytes * 1e9) if cuda else int(min(gigabytes, 0.25) * 1e9)
    source = torch.empty(size, dtype=torch.uint8, device=device).random_(0, 255)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up
    seconds: list[float] = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            target.copy_(source)
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3)
        else:
            began = time.perf_counter()
            target.copy_(source)
            seconds.append(time.perf_counter() - began)
    moved = 2 * size
    median_s = statistics.median(seconds)
    result: dict[str, Any] = {
        "gb_per_s": moved / median_s / 1e9,
        "method": ("torch copy_ device-to-device, CUDA events" if cuda else "torch copy_ in host memory, perf_counter")
                  + ", bytes read + bytes written, median of repeats after one warm-up",
        "bytes": moved,
        "repeats": repeats,
        "seconds": [round(value, 6) for value in seconds],
        "device": str(device),
    }
    if cuda:
        properties = torch.cuda.get_device_properties(device)
        result["device_name"] = properties.name
        result["device_memory_gib"] = round(properties.total_memory / 2**30, 1)
    del source, target
    if cuda:
        torch.cuda.empty_cache()  # the caching allocator would otherwise keep the buffers (4 GB by default)
    return result


def measure_copy_bandwidth_in_child(device: str = "cuda", **options: Any) -> dict[str, Any]:
    """`measure_copy_bandwidth` in a spawned child process, so that none of its device memory (buffers, the
    allocator's cache, the CUDA/HIP context itself) is held by this process when vLLM checks free memory at
    start-up; a child's device memory is released when it exits."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(_measure_and_name_process, device, options).result()
    return {**result, "process": "a spawned child process, which exited before the models were loaded"}


def _measure_and_name_process(device: str, options: dict[str, Any]) -> dict[str, Any]:
    import os

    return {**measure_copy_bandwidth(device, **options), "pid": os.getpid()}


def kv_bytes_per_token(info: Mapping[str, Any]) -> int:
    """Bytes of K and V one token of context occupies in the cache, all layers."""
    shape = info["shape"]
    heads = int(shape["num_attention_heads"])
    kv_heads = int(shape.get("num_key_value_heads", heads))
    head_dim = int(shape.get("head_dim", int(shape["hidden_size"]) // heads))
    return 2 * int(shape["num_hidden_layers"]) * kv_heads * head_dim * _BYTES[info["dtype"]]


def weight_bytes_read(info: Mapping[str, Any], batch: int) -> int:
    """Weights one decode step reads: all of them, except that the input embedding gives only `batch` rows.

    Assumes untied embeddings (Llama 2 and Swallow); a tied table is read in full by the LM head anyway."""
    element = _BYTES[info["dtype"]]
    hidden = int(info["shape"]["hidden_size"])
    embedding = int(info["vocab_size"]) * hidden * element
    return int(info["weight_bytes"]) - embedding + batch * hidden * element


def roofline_tokens_per_s(info: Mapping[str, Any], bandwidth_gb_s: float, context_tokens: float, batch: int) -> dict[str, float]:
    step_bytes = weight_bytes_read(info, batch) + batch * context_tokens * kv_bytes_per_token(info)
    steps_per_s = bandwidth_gb_s * 1e9 / step_bytes
    return {"bytes_per_step": step_bytes, "steps_per_s": steps_per_s, "tokens_per_s": steps_per_s * batch}


def roofline_table(models_loaded: Mapping[str, Mapping[str, Any]],
                   decode_tokens_per_s: Mapping[tuple[str, str], float],
                   bandwidth: Mapping[str, Any], context_tokens: float,
                   batch: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per (model, mode) in `decode_tokens_per_s`: bytes read per step, roofline, achieved, percent.

    `models_loaded`: LoadedModelInfo dicts (weight_bytes, vocab_size, dtype, shape); `bandwidth`: the dict of
    `measure_copy_bandwidth`; `context_tokens`: the average context length during decode (prompt + half the
    new tokens); `batch`: rows per decode step in each mode (latency 1, throughput = number of prompts)."""
    rows = []
    for (model, mode), achieved in sorted(decode_tokens_per_s.items()):
        info = models_loaded[model]
        rows_in_step = int(batch[mode])
        limit = roofline_tokens_per_s(info, float(bandwidth["gb_per_s"]), context_tokens, rows_in_step)
        rows.append({
            "model": model,
            "mode": mode,
            "batch": rows_in_step,
            "weight_bytes_read": weight_bytes_read(info, rows_in_step),
            "kv_bytes_read": int(round(rows_in_step * context_tokens * kv_bytes_per_token(info))),
            "bytes_per_step": int(round(limit["bytes_per_step"])),
            "bandwidth_gb_s": float(bandwidth["gb_per_s"]),
            "roofline_tokens_per_s": limit["tokens_per_s"],
            "achieved_tokens_per_s": float(achieved),
            "percent_of_roofline": 100.0 * float(achieved) / limit["tokens_per_s"],
        })
    return rows


def decode_rates(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Achieved decode tokens/s per (model, mode) from measured trial records: tokens after the first over the
    time after the first token; median over units (a batch in throughput mode, else one generation)."""
    units: dict[tuple[str, str, Any], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("phase") != "measure" or record.get("error") or record.get("ttft_s") is None:
            continue
        if record.get("variant", "default") != "default":  # ablations are reported on their own
            continue
        # A batch (throughput mode) is one unit; every batch-1 call (latency, fixed text) is its own.
        unit = record["trial"] if record["mode"] == "throughput" else record["record_id"]
        units[(record["model"], record["mode"], unit)].append(record)
    rates: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (model, mode, _), batch in units.items():
        tokens = sum(int(record["output_tokens"]) - 1 for record in batch)
        seconds = max(float(record["e2e_s"]) for record in batch) - max(float(record["ttft_s"]) for record in batch)
        if tokens > 0 and seconds > 0:
            rates[(model, mode)].append(tokens / seconds)
    return {key: statistics.median(values) for key, values in rates.items()}


def average_context(records: Iterable[Mapping[str, Any]]) -> float:
    """Mean context length during decode: prompt tokens + half the generated tokens, over measured records."""
    values = [int(record["prompt_tokens"]) + int(record["output_tokens"]) / 2 for record in records
              if record.get("phase") == "measure" and not record.get("error")]
    return sum(values) / len(values) if values else 0.0
