"""End to end through the CLI on the tiny pair with the real transformers engine: records, results, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifact.cli import app

runner = CliRunner()
SMALL = ["--set", "generation.max_prompts=4", "--set", "generation.max_new_tokens=12",
         "--set", "generation.min_new_tokens=12", "--set", "trials.measured=2",
         "--set", "analysis.bootstrap_resamples=2000"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, tiny_pair) -> Path:
    output = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["run", "smoke", "--output", str(output), *SMALL])
    assert result.exit_code == 0, result.output
    (run_dir,) = output.iterdir()
    return run_dir


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().split("\n") if line]


def test_records_have_forced_lengths_and_counts(smoke_run: Path) -> None:
    rows = records(smoke_run)
    measured = [row for row in rows if row["phase"] == "measure"]
    warmups = [row for row in rows if row["phase"] == "warmup"]
    # trials x models (candidate, baseline, A/A twin) x (6 reference documents + 4 prompts x 2 free-generation modes)
    assert len(measured) == 2 * 3 * (6 + 4 * 2)
    assert len(warmups) == 1 * 3 * 3 * 2  # one warm-up trial x models x modes x warmup_prompts
    for row in rows:
        if row["mode"] == "fixed_text":  # the tokens of the reference text in this model's tokenization
            assert row["output_tokens"] == row["expected_output_tokens"] > 0
        else:
            assert row["output_tokens"] == row["expected_output_tokens"] == 12
        assert row["error"] is None
        assert row["output_chars"] == len(row["output_text"])
        assert row["output_bytes"] == len(row["output_text"].encode("utf-8"))
        assert row["e2e_s"] > 0 and row["prompt_tokens"] > 0
        if row["mode"] == "throughput":  # the whole batch: 4 prompts measured, warmup_prompts (2) in the warm-up
            assert row["batch_size"] == (4 if row["phase"] == "measure" else 2)
        else:
            assert row["batch_size"] == 1
        assert 0 < row["ttft_s"] <= row["e2e_s"]


def test_expanded_tokenizer_sees_shorter_japanese_prompts(smoke_run: Path) -> None:
    prompt_tokens = {}
    for row in records(smoke_run):
        prompt_tokens.setdefault(row["model"], {})[row["prompt_id"]] = row["prompt_tokens"]
    for prompt_id, base_count in prompt_tokens["tiny-baseline"].items():
        assert prompt_tokens["tiny-expanded"][prompt_id] < base_count


def test_models_alternate_per_unit_with_recorded_positions(smoke_run: Path) -> None:
    """transformers keeps every model resident: each prompt of a round runs on all models back to back, in a
    counterbalanced order, and every record says at which position its model ran."""
    measured = sorted((row for row in records(smoke_run) if row["phase"] == "measure" and row["mode"] == "fixed_text"),
                      key=lambda row: row["sequence"])
    groups = [measured[index:index + 3] for index in range(0, len(measured), 3)]
    assert len(groups) == 2 * 6
    for group in groups:
        assert len({(row["trial"], row["prompt_id"]) for row in group}) == 1
        assert {row["model"] for row in group} == {"tiny-expanded", "tiny-baseline", "tiny-baseline-twin"}
        assert [row["position"] for row in group] == [0, 1, 2]
    first = [group[0]["model"] for group in groups]  # 6 documents = the 6 Williams rows: balanced in each round
    assert first.count("tiny-expanded") == first.count("tiny-baseline") == first.count("tiny-baseline-twin") == 4


def test_results_json_has_verdict_metrics_and_cost(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["schema_version"] == 2
    assert results["claim"]["id"] == "R-2"
    assert results["claim"]["verdict_metric"]["metric"] == "ja_chars_per_s"
    (comparison,) = results["comparisons"]
    assert comparison["baseline"] == "tiny-baseline"
    verdict = comparison["verdict"]
    from artifact.claims import verdict as rule

    # The verdict: fixed-text timing over 6 documents x 2 rounds, measured; recomputable from the records.
    assert verdict["mode"] == "fixed_text" and verdict["basis"] == "measured, fixed text"
    assert (verdict["ratio"]["n"], verdict["ratio"]["n_rounds"]) == (6, 2)
    fixed = [row for row in records(smoke_run) if row["phase"] == "measure" and row["mode"] == "fixed_text"]
    total = {model: sum(row["e2e_s"] for row in fixed if row["model"] == model) for model in ("tiny-baseline", "tiny-expanded")}
    assert verdict["ratio"]["estimate"] == pytest.approx(total["tiny-baseline"] / total["tiny-expanded"], rel=1e-9)
    assert verdict["outcome"] == verdict["statistical_outcome"] == rule(verdict["ratio"]["low"], verdict["ratio"]["high"], 1.70)
    assert verdict["few_units"] is True  # 6 documents < 8: flagged next to the verdict
    noise = results["noise_floor"]
    assert noise["pair"] == ["tiny-baseline", "tiny-baseline-twin"] and noise["tolerance"] == 0.05
    assert noise["ratio"]["low"] <= noise["ratio"]["estimate"] <= noise["ratio"]["high"]
    assert noise["noisy"] == (abs(noise["ratio"]["estimate"] - 1) > 0.05)
    markers = "few units; NOISY; smoke" if noise["noisy"] else "few units; smoke"
    assert verdict["display"] == f"{verdict['outcome']} ({markers})"
    assert results["completeness"]["status"] == "complete" and results["completeness"]["planned"] == 2 * 3 * (6 + 4 * 2)
    assert results["completeness"]["planned_from"] == "plan.json" and results["completeness"]["missing"] == []
    assert verdict["ratio"]["low"] <= verdict["ratio"]["estimate"] <= verdict["ratio"]["high"]
    latency = comparison["ratios"]["latency"]
    assert set(latency) >= {"ja_chars_per_s", "tokens_per_s"}
    assert latency["ja_chars_per_s"]["n"] == 4 and latency["ja_chars_per_s"]["n_rounds"] == 2
    for model in ("tiny-expanded", "tiny-baseline"):
        metrics = results["models"][model]["metrics"]["latency"]
        assert set(metrics) >= {"tokens_per_s", "ja_chars_per_s", "tpot_s", "ttft_s"}
    tokens = json.loads((smoke_run / "tokens.json").read_text())["per_document"]["prompts"]["tokens"]
    token_ratio = sum(tokens["tiny-baseline"]) / sum(tokens["tiny-expanded"])
    projected = latency["ja_chars_per_s_projected"]
    assert projected["estimate"] == pytest.approx(latency["tokens_per_s"]["estimate"] * token_ratio, rel=1e-9)
    assert projected["low"] <= projected["estimate"] <= projected["high"]
    assert results["models"]["tiny-expanded"]["metrics"]["latency"]["ja_chars_per_s_projected"]["estimate"] > 0
    assert results["token_efficiency"]["corpora"][0]["corpus"] == "prompts"
    assert results["summary"]["validation_status"] == results["summary"]["combined_display"]
    assert results["summary"]["combined_verdict"] == verdict["outcome"] and "smoke" in results["summary"]["validation_type"]
    assert results["summary"]["speedup_ratio"] == pytest.approx(verdict["ratio"]["estimate"])
    phases = {phase["phase"] for phase in results["cost"]["phases"]}
    assert {"prepare", "load", "warmup", "measure", "analysis"} <= phases
    assert results["cost"]["gpu_hours"] == 0 and results["cost"]["accelerator"] is False
    assert results["environment"]["python"]["version"]

    # Warm-up per model, from the phase log: every model of the run, adding up to the warm-up phase.
    by_model = {row["model"]: row for row in results["cost"]["warmup_by_model"]}
    assert set(by_model) == {"tiny-expanded", "tiny-baseline", "tiny-baseline-twin"}
    assert all(row["seconds"] > 0 and row["decode_steps"] == 0 for row in by_model.values())  # compile is off here
    warmup_phase = next(phase["seconds"] for phase in results["cost"]["phases"] if phase["phase"] == "warmup")
    assert sum(row["seconds"] for row in by_model.values()) == pytest.approx(warmup_phase, abs=0.005)
    report = (smoke_run / "report.md").read_text()
    assert "Warm-up per model (untimed" in report and f"tiny-baseline-twin {by_model['tiny-baseline-twin']['seconds_text']} s" in report


def test_report_shows_verdict_first_and_smoke_warning(smoke_run: Path) -> None:
    report = (smoke_run / "report.md").read_text()
    assert "not evidence about Swallow" in report
    assert report.index("## Verdict") < report.index("## Method") < report.index("## Environment") < report.index("## Cost log")
    assert "**The verdict uses:** Japanese characters per second" in report
    assert "**Claim verdict: " in report and "Noise floor (A/A):** tiny-baseline-twin vs tiny-baseline" in report
    assert "**Estimator** (recompute it from `trials.jsonl`)" in report and "Per-round ratios vs tiny-baseline" in report
    assert "originally planned metric" in report
    assert "they are the same tokenizer" not in report  # the tiny pair's tokenizers differ
    tex = (smoke_run / "report.tex").read_text()
    assert r"\section*{Verdict}" in tex and "tiny-baseline" in tex


def test_report_names_the_lock_the_environment_was_installed_from(smoke_run: Path) -> None:
    lock = json.loads((smoke_run / "environment.json").read_text())["lock"]
    report = (smoke_run / "report.md").read_text()
    tex = (smoke_run / "report.tex").read_text()
    if lock["lock"] is None:  # an environment not built by `make setup` (e.g. a hand-made venv)
        assert "**Installed from lock:** no (not installed from a lock" in report
    else:
        assert f"**Installed from lock:** `{lock['lock']}` sha256 `{lock['sha256']}`" in report
        assert lock["sha256"] in tex
        assert lock["matches_checkout"] is True and lock["differs_from_lock"] == []


def test_report_command_rerenders_the_same_numbers(smoke_run: Path) -> None:
    before = json.loads((smoke_run / "results.json").read_text())
    report_before = (smoke_run / "report.md").read_text()
    (smoke_run / "results.json").unlink()
    (smoke_run / "report.md").unlink()
    result = runner.invoke(app, ["report", str(smoke_run)])
    assert result.exit_code == 0, result.output
    after = json.loads((smoke_run / "results.json").read_text())
    assert after["comparisons"] == before["comparisons"]
    assert after["models"] == before["models"]
    assert after["cost"] == before["cost"]
    assert (smoke_run / "report.md").read_text() == report_before


def test_user_errors_exit_cleanly_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "no-such-config"])
    assert result.exit_code == 2
    assert "no shipped config of that name" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_plan_command_prints_estimate(mirror: Path) -> None:
    result = runner.invoke(app, ["plan", "r2-swallow-7b", "--data-mirror", str(mirror)])
    assert result.exit_code == 0, result.output
    assert "swallow-7b-nve" in result.output and "GPU-hours" in result.output
    assert "trial 1: swallow-7b-nve -> llama-2-7b -> swallow-7b" in result.output  # Williams row 2 for 3 models
    assert "positions in latency mode" in result.output and "balanced" in result.output


def test_validate_runs_a_registered_claim(tmp_path: Path, tiny_pair) -> None:
    result = runner.invoke(app, ["validate", "R-2", "--config", "smoke", "--output", str(tmp_path), *SMALL,
                                 "--set", "trials.modes=[\"latency\"]", "--set", "trials.warmup=0"])
    assert result.exit_code == 0, result.output
    assert "claim R-2" in result.output and "tiny-baseline" in result.output
    assert len(list(tmp_path.iterdir())) == 1


def test_validate_argument_errors() -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2 and "registered claims: R-2" in result.output
    result = runner.invoke(app, ["validate", "R-3"])
    assert result.exit_code == 2 and "unknown claim 'R-3'" in result.output


FREE = ["--set", 'trials.modes=["latency", "throughput"]']  # the free-generation modes only (runner behaviour)


def test_resume_completes_an_interrupted_run(tmp_path: Path, tiny_pair) -> None:
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), *SMALL, *FREE])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    measured_ids = {row["record_id"] for row in records(run_dir) if row["phase"] == "measure"}
    # Interrupt in the middle of the first throughput batch (after 2 of its 4 records), mid-write.
    lines = (run_dir / "trials.jsonl").read_text().split("\n")[:-1]
    cut = [index for index, line in enumerate(lines)
           if json.loads(line)["phase"] == "measure" and json.loads(line)["mode"] == "throughput"][1]
    (run_dir / "trials.jsonl").write_text("\n".join(lines[: cut + 1]) + "\n" + lines[cut + 1][:40])

    with pytest.warns(UserWarning, match="unreadable record skipped"):
        result = runner.invoke(app, ["run", "smoke", "--resume", str(run_dir), *SMALL, *FREE])
        assert result.exit_code == 0, result.output
        rows = records_skipping_torn(run_dir)
    assert {row["record_id"] for row in rows if row["phase"] == "measure"} == measured_ids
    sequences = [row["sequence"] for row in rows]
    assert len(set(sequences)) == len(sequences)
    from artifact.analysis import measured_records

    batches = {}
    for row in measured_records(rows):
        if row["mode"] == "throughput":
            batches.setdefault((row["trial"], row["model"]), set()).add((row["batch_size"], row["e2e_s"]))
    # Each throughput unit is one whole batch of 4: the part-finished batch was served again, whole.
    assert batches and all(values == {(4, next(iter(values))[1])} for values in batches.values())

    result = runner.invoke(app, ["run", "smoke", "--resume", str(run_dir), *SMALL, *FREE, "--set", "trials.measured=3"])
    assert result.exit_code == 2 and "different config" in result.output


def records_skipping_torn(run_dir: Path) -> list[dict]:
    from artifact.store import RunDirectory

    return RunDirectory.open(run_dir).records()


def test_roofline_section_appears_when_the_run_measured_bandwidth(smoke_run: Path) -> None:
    from artifact.measure.roofline import measure_copy_bandwidth

    bandwidth = measure_copy_bandwidth("cpu", gigabytes=0.05, repeats=3)
    (smoke_run / "bandwidth.json").write_text(json.dumps(bandwidth))
    try:
        result = runner.invoke(app, ["report", str(smoke_run)])
        assert result.exit_code == 0, result.output
        results = json.loads((smoke_run / "results.json").read_text())
        rows = results["roofline"]["rows"]
        assert {(row["model"], row["mode"]) for row in rows} == {
            (model, mode) for model in ("tiny-expanded", "tiny-baseline", "tiny-baseline-twin")
            for mode in ("fixed_text", "latency", "throughput")}
        for row in rows:
            assert row["percent_of_roofline"] == pytest.approx(100 * row["achieved_tokens_per_s"] / row["roofline_tokens_per_s"])
        assert "## Roofline" in (smoke_run / "report.md").read_text()
    finally:
        (smoke_run / "bandwidth.json").unlink()
        runner.invoke(app, ["report", str(smoke_run)])


def test_ablation_is_skipped_and_reported_when_the_run_uses_transformers(tmp_path: Path, tiny_pair) -> None:
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), *SMALL, "--set", "engine.name=auto",
                                 "--set", "trials.modes=[\"latency\"]", "--set", "engine.vllm.ablate_chunked_prefill=true"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    engine = json.loads((run_dir / "engine.json").read_text())
    if engine["used"] == "vllm":
        pytest.skip("vLLM is importable here: the ablation runs (tests/test_vllm_engine.py covers it)")
    assert engine["skipped_variants"] == {"no-chunked-prefill": 2 * 3 * 4}  # trials x models (with the A/A twin) x prompts
    assert {row["variant"] for row in records(run_dir)} == {"default"}
    assert "Ablation not run" in (run_dir / "report.md").read_text()


def test_a_bad_model_path_leaves_no_run_directory(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text((Path(__file__).resolve().parent.parent / "artifact" / "configs" / "smoke.toml").read_text()
                      .replace('builtin = "tiny-baseline"', f'path = "{tmp_path / "missing"}"'))
    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "has no config.json" in result.output
    assert not (tmp_path / "runs").exists()


def test_rerender_uses_the_claim_as_judged_and_refuses_an_empty_run(smoke_run: Path, tmp_path: Path) -> None:
    stored = json.loads((smoke_run / "config.resolved.json").read_text())
    assert stored["claim"]["id"] == "R-2" and stored["claim"]["threshold"] == 1.70
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.resolved.json").write_text(json.dumps(stored))
    (empty / "trials.jsonl").write_text("")
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "no measured generations" in result.output


def test_a_measured_call_that_compiles_is_timed_again(tmp_path: Path, tiny_pair) -> None:
    """With no warm-up, the static-cache path prepares each new shape inside a measured call: the runner
    must serve that call again rather than record one-off work as decode time."""
    result = runner.invoke(app, ["run", "smoke", "--output", str(tmp_path), *SMALL, *FREE, "--set", "trials.warmup=0",
                                 "--set", "engine.transformers.compile=true"])
    assert result.exit_code == 0, result.output
    assert "timed again" in result.output
    (run_dir,) = tmp_path.iterdir()
    engine = json.loads((run_dir / "engine.json").read_text())
    assert engine["recompiled_measured_calls"] >= 2  # batch 1 (latency) and batch 4 (throughput), per model
    rows = [row for row in records(run_dir) if row["phase"] == "measure"]
    assert len(rows) == len({row["record_id"] for row in rows}) == 2 * 3 * 2 * 4


def test_plan_with_a_pilot_run_gives_sample_size_advice(smoke_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "smoke", "--pilot", str(smoke_run)])
    assert result.exit_code == 0, result.output
    assert "pilot vs tiny-baseline:" in result.output and "Units needed by rounds" in result.output
    result = runner.invoke(app, ["plan", "smoke", "--pilot", str(tmp_path)])
    assert result.exit_code == 2 and "no results.json there" in result.output
