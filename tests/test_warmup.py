"""Warm-up coverage of the measured call shapes, the first-call re-run and the first-trial outlier check.

The runner's part runs the real transformers engine on the tiny pair through the CLI; the outlier check is a
pure function on records, tested with exact values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifact.cli import app
from artifact.config import load_config, parse_overrides
from artifact.corpora import Prompt
from artifact.measure.warmup import OUTLIER_FACTOR, block_calls, measured_calls, ttft_outliers_by_trial
from artifact.plan import build_plan

runner = CliRunner()
PROMPTS = [Prompt(id=f"p{i}", text=f"prompt {i}") for i in range(5)]
SMALL = ["--set", "generation.max_prompts=4", "--set", "generation.max_new_tokens=6",
         "--set", "generation.min_new_tokens=6", "--set", "trials.measured=2",
         "--set", "analysis.bootstrap_resamples=500", "--set", 'trials.modes=["latency", "throughput"]']
MODELS = ("tiny-expanded", "tiny-baseline", "tiny-baseline-twin")  # the smoke config's (the twin is the A/A pair)


def test_measured_calls_follow_how_the_runner_serves_each_mode() -> None:
    config = load_config("smoke", parse_overrides(["generation.max_prompts=4", "trials.measured=2",
                                                   'trials.modes=["latency", "throughput"]']))
    plan = build_plan(config, PROMPTS)
    calls = measured_calls(plan, "tiny-baseline", "default")
    latency = [call for call in calls if "latency" in call[0].request_id]
    throughput = [call for call in calls if "throughput" in call[0].request_id]
    assert [len(call) for call in latency] == [1] * 4 * 2  # one call per prompt, per trial
    assert [len(call) for call in throughput] == [4] * 2  # one batch of every prompt, per trial
    assert all(request.request_id.split("-")[3] == "baseline" for call in calls for request in call)
    block = plan.measured[0]
    assert block_calls(block) == ([tuple(block.requests)] if block.mode == "throughput"
                                  else [(request,) for request in block.requests])


def _record(trial: int, ttft_s: float, prompt: str = "p0", mode: str = "latency", **extra: object) -> dict:
    return {"phase": "measure", "trial": trial, "model": "m", "variant": "default", "mode": mode,
            "prompt_id": prompt, "ttft_s": ttft_s, "error": None, **extra}


def test_outliers_compare_each_trial_with_the_same_prompts_other_trials() -> None:
    records = [
        _record(0, 0.0040, "slow"), _record(1, 0.0015, "slow"), _record(2, 0.0017, "slow"),  # 4.0 ms vs 1.6 ms
        _record(0, 0.0019, "jitter"), _record(1, 0.0010, "jitter"),  # 1.9x but only 0.9 ms slower: not flagged
        _record(0, 0.0300, "ratio"), _record(1, 0.0250, "ratio"),  # 5 ms slower but only 1.2x: not flagged
        _record(0, 0.0020, "late"), _record(1, 0.0090, "late"),  # a later trial is judged by the same rule
        _record(0, 0.0090, "alone"),  # no other trial to compare with
        _record(0, 0.0090, "failed", error="length mismatch"), _record(1, 0.0010, "failed"),
        {**_record(0, 0.0090, "warm"), "phase": "warmup"}, _record(1, 0.0010, "warm"),
    ]
    outliers = ttft_outliers_by_trial(records)
    assert sorted(outliers) == [0, 1, 2]
    assert outliers[0] == [{"model": "m", "variant": "default", "mode": "latency", "prompt_id": "slow", "trial": 0,
                            "ttft_s": 0.0040, "other_trials_median_ttft_s": pytest.approx(0.0016)}]
    assert [(row["prompt_id"], row["ttft_s"], row["other_trials_median_ttft_s"]) for row in outliers[1]] == [
        ("late", 0.0090, 0.0020)]
    assert outliers[2] == []
    assert OUTLIER_FACTOR * 0.0016 < 0.0040


def test_a_slow_batch_counts_once() -> None:
    records = [_record(trial, ttft, prompt, mode="throughput")
               for prompt in ("a", "b", "c") for trial, ttft in ((0, 0.05), (1, 0.01), (2, 0.011))]
    outliers = ttft_outliers_by_trial(records)
    assert [(row["mode"], row["ttft_s"]) for row in outliers[0]] == [("throughput", 0.05)]
    assert outliers[1] == outliers[2] == []


def _run(tmp_path: Path, *extra: str) -> tuple[Path, str]:
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), *SMALL, *extra])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    return run_dir, result.output


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines() if line]


def _shapes(rows: list[dict], model: str, phase: str) -> set[tuple[int, bool]]:
    """The call shapes of the transformers engine's eager path (no compile: nothing is specialised to a prompt
    length): the batch size and whether the call emits a fixed text (greedy throughout)."""
    return {(row["batch_size"], row["mode"] == "fixed_text") for row in rows
            if row["phase"] == phase and row["model"] == model}


def _uncovered_shapes(rows: list[dict], model: str, warmup: set[tuple[int, bool]]) -> int:
    """Measured shapes the warm-up trial left out."""
    return len(_shapes(rows, model, "measure") - warmup)


@pytest.mark.usefixtures("tiny_pair")
def test_warmup_covers_every_measured_shape(tmp_path: Path) -> None:
    run_dir, output = _run(tmp_path, "--set", "trials.warmup_prompts=1")
    rows = _rows(run_dir)
    expected = 0
    for model in MODELS:
        warmup = _shapes(rows, model, "warmup")
        assert warmup == {(1, False)}  # one prompt: a latency call, and a throughput "batch" of one
        expected += _uncovered_shapes(rows, model, warmup)  # the throughput batch of 4
    engine = json.loads((run_dir / "engine.json").read_text())
    assert engine["shape_warmup_calls"] == expected == len(MODELS)
    assert "first_call_reruns" not in engine and "timed again" not in output
    # The coverage calls are untimed and unrecorded: the records are the plan's, nothing more.
    assert len([row for row in rows if row["phase"] == "measure"]) == len(MODELS) * 2 * 2 * 4
    phases = [json.loads(line) for line in (run_dir / "phases.jsonl").read_text().splitlines()]
    assert sum(phase.get("shape_calls", 0) for phase in phases if phase["phase"] == "warmup") == expected
    report = (run_dir / "report.md").read_text()
    assert f"{expected} untimed call(s)" in report
    outliers = engine["ttft_outliers_by_trial"]  # two trials: per prompt, at most one of them stands out
    assert sorted(outliers) == ["0", "1"] and "per trial (first-call cost" in report
    assert f"trial 0: {len(outliers['0'])}, trial 1: {len(outliers['1'])}." in report


@pytest.mark.usefixtures("tiny_pair")
def test_without_warmup_each_first_call_at_a_shape_is_timed_again(tmp_path: Path) -> None:
    run_dir, output = _run(tmp_path, "--set", "trials.warmup=0")
    rows = _rows(run_dir)
    engine = json.loads((run_dir / "engine.json").read_text())
    # transformers keeps both models loaded: each shape is new once per model, in its first trial.
    expected = sum(_uncovered_shapes(rows, model, set()) for model in MODELS)
    assert engine["first_call_reruns"] == expected == 2 * len(MODELS) and engine["shape_warmup_calls"] == 0
    assert "first at their shape and were timed again" in output
    measured = [row for row in rows if row["phase"] == "measure"]
    assert len(measured) == len({row["record_id"] for row in measured}) == len(MODELS) * 2 * 2 * 4
