"""Roofline arithmetic on hand-computed numbers."""

from __future__ import annotations

import pytest

from artifact.measure.roofline import (average_context, decode_rates, kv_bytes_per_token, measure_copy_bandwidth,
                                       roofline_table, weight_bytes_read)

# A toy model: hidden 4, 2 layers, 2 heads, 1 KV head (head dim 2), vocab 10, bf16, 1,000 weight bytes.
INFO = {"weight_bytes": 1000, "vocab_size": 10, "dtype": "bfloat16",
        "shape": {"hidden_size": 4, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}}


def test_bytes() -> None:
    assert kv_bytes_per_token(INFO) == 2 * 2 * 1 * 2 * 2  # K and V x layers x kv heads x head dim x 2 bytes = 16
    assert weight_bytes_read(INFO, 1) == 1000 - 10 * 4 * 2 + 1 * 4 * 2  # embedding: only the gathered row = 928
    assert weight_bytes_read(INFO, 3) == 944


def test_roofline_table() -> None:
    bandwidth = {"gb_per_s": 1e-6}  # 1,000 bytes/s
    rows = roofline_table({"m": INFO}, {("m", "latency"): 0.5, ("m", "throughput"): 1.5}, bandwidth,
                          context_tokens=4.5, batch={"latency": 1, "throughput": 2})
    latency, throughput = sorted(rows, key=lambda row: row["mode"])
    assert latency["bytes_per_step"] == 928 + 72  # 4.5 tokens x 16 bytes
    assert latency["roofline_tokens_per_s"] == pytest.approx(1.0)
    assert latency["percent_of_roofline"] == pytest.approx(50.0)
    assert throughput["bytes_per_step"] == 936 + 144
    assert throughput["roofline_tokens_per_s"] == pytest.approx(2 * 1000 / 1080)
    assert throughput["percent_of_roofline"] == pytest.approx(100 * 1.5 * 1080 / 2000)


def test_decode_rates_and_context() -> None:
    def record(model, mode, rid, trial, e2e, ttft, tokens=11, prompt=5):
        return {"phase": "measure", "model": model, "mode": mode, "record_id": rid, "trial": trial, "e2e_s": e2e,
                "ttft_s": ttft, "output_tokens": tokens, "prompt_tokens": prompt, "error": None}

    records = [record("m", "latency", "a", 0, 1.5, 0.5), record("m", "latency", "b", 0, 2.5, 0.5),
               record("m", "latency", "c", 0, 3.0, 0.5), record("m", "throughput", "x", 0, 2.0, 1.0),
               record("m", "throughput", "y", 0, 3.0, 1.0), {"phase": "warmup", "model": "m"},
               # fixed text runs at batch 1: each generation is its own unit, never summed over a round
               record("m", "fixed_text", "f1", 0, 2.5, 0.5), record("m", "fixed_text", "f2", 0, 1.5, 0.5),
               record("m", "fixed_text", "f3", 1, 3.0, 0.5)]
    rates = decode_rates(records)
    assert rates[("m", "fixed_text")] == pytest.approx(10 / 2.0)
    assert rates[("m", "latency")] == pytest.approx(10 / 2.0)  # median of 10/1, 10/2, 10/2.5
    assert rates[("m", "throughput")] == pytest.approx(20 / 2.0)
    assert average_context(records) == pytest.approx(5 + 5.5)  # every record: 5 prompt + 11 / 2


def test_copy_bandwidth_on_cpu() -> None:
    result = measure_copy_bandwidth("cpu", gigabytes=0.01, repeats=3)
    assert result["gb_per_s"] > 0 and result["bytes"] == 2 * 10_000_000 and len(result["seconds"]) == 3


def test_copy_bandwidth_in_a_child_process_holds_nothing_here() -> None:
    """The probe runs in a spawned child: its buffers (and, on a GPU, its allocator cache and context) go with
    the child, so vLLM's start-up memory check in this process sees the whole device free."""
    import os

    from artifact.measure.roofline import measure_copy_bandwidth_in_child

    result = measure_copy_bandwidth_in_child("cpu", gigabytes=0.01, repeats=2)
    assert result["pid"] != os.getpid() and "child process" in result["process"]
    assert result["gb_per_s"] > 0 and len(result["seconds"]) == 2 and result["bytes"] == 2 * 10_000_000
