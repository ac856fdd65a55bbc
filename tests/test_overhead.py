"""Harness overhead from a real run directory: block time minus engine-call time, counted once per batch."""

from __future__ import annotations

import pytest

from artifact.measure.overhead import harness_overhead


def test_overhead_counts_a_batch_call_once() -> None:
    phases = [{"phase": "measure", "seconds": 2.0}, {"phase": "load", "seconds": 50.0}, {"phase": "measure", "seconds": 1.0}]
    records = ([{"phase": "measure", "call_wall_s": 0.9, "batch_size": 1}, {"phase": "measure", "call_wall_s": 0.95, "batch_size": 1}]
               + [{"phase": "measure", "call_wall_s": 0.8, "batch_size": 4}] * 4
               + [{"phase": "warmup", "call_wall_s": 7.0, "batch_size": 1}])
    result = harness_overhead(phases, records)
    assert result is not None
    assert result["engine_calls_s"] == pytest.approx(0.9 + 0.95 + 0.8)
    assert result["outside_calls_s"] == pytest.approx(3.0 - 2.65)
    assert result["fraction"] == pytest.approx(0.35 / 3.0)
    assert result["generations"] == 6


def test_no_measured_block_gives_none() -> None:
    assert harness_overhead([{"phase": "load", "seconds": 1.0}], []) is None


def test_overhead_of_a_real_smoke_sized_run(tmp_path, tiny_pair) -> None:
    from artifact.config import load_config
    from artifact.pipeline import run_experiment

    config = load_config("smoke", {"trials.measured": "1", "generation.max_prompts": "3", "trials.warmup_prompts": "1"})
    outcome = run_experiment(config, output_root=tmp_path)
    overhead = outcome.results["harness_overhead"]
    assert overhead["generations"] == len([r for r in outcome.run.records() if r["phase"] == "measure"])
    assert 0 <= overhead["fraction"] < 1
    assert overhead["engine_calls_s"] <= overhead["measured_blocks_s"]
