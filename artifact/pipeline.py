"""One experiment end to end: plan -> trials -> records -> analysis -> report, in a run directory."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from artifact.analysis import ReferenceCorpus, analyse
from artifact.claims import Claim, claim_from_dict, claim_to_dict, get_claim
from artifact.config import ExperimentConfig, config_from_resolved, engine_variants
from artifact.fingerprints import NOT_FINGERPRINTED, differences, fingerprint, fingerprinted_config, input_fingerprints
from artifact.confounds import architecture_facts, check_confounds
from artifact.corpora import load_prompts
from artifact.cost import OUTSIDE_PHASES, cost_log, ran_on_accelerator, warmup_by_model
from artifact.engines import EngineFactory
from artifact.errors import ArtifactError
from artifact.measure.overhead import harness_overhead
from artifact.measure.environment import TelemetrySampler, capture_environment, noise_warnings, telemetry_snapshot
from artifact.measure.roofline import average_context, decode_rates, measure_copy_bandwidth_in_child, roofline_table
from artifact.measure.tokens import measure_config_tokens
from artifact.measure.trials import PhaseClock, TrialRunner, loaded_info_dict
from artifact.measure.warmup import ttft_outliers_by_trial
from artifact.models import resolve_model
from artifact.plan import Plan, build_plan, planned_generations
from artifact.preflight import check_prompt_lengths
from artifact.reference_texts import reference_texts
from artifact.report import render_reports
from artifact.report.samples import sample_outputs
from artifact.sessions import append_telemetry, begin_session, end_session, merge_models, read_telemetry, session_summary
from artifact.standin import with_local_tokenizer
from artifact.store import (CONFIG_FILE, ENVIRONMENT_FILE, MODELS_FILE, RESULTS_FILE, TRIALS_FILE, RunDirectory, RunLock,
                            utc_now)

ENGINE_FILE = "engine.json"
TOKENS_FILE = "tokens.json"
BANDWIDTH_FILE = "bandwidth.json"
CONFOUNDS_FILE = "confounds.json"
PLAN_FILE = "plan.json"  # every planned measured generation: what a complete run holds


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, label: str, count: int) -> None: ...
    def note(self, message: str) -> None: ...


class SilentProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, label: str, count: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class RunOutcome:
    run: RunDirectory
    results: dict[str, Any]


def load_plan(config: ExperimentConfig, data_mirror: Path | None = None) -> Plan:
    """The plan with its units: prompts from the prompts file; fixed_text mode's reference documents (read through
    the data manifest, so from `data_mirror` when given)."""
    units = reference_texts(config, mirror=data_mirror) if "fixed_text" in config.trials.modes else None
    return build_plan(config, load_prompts(config.generation.prompts), reference_units=units)


@dataclass(frozen=True)
class OpenedRun:
    run: RunDirectory
    lock: RunLock  # held until the session ends: one process per run directory
    created: bool  # a new directory (removed again if the start fails before the first record)
    completed: set[str]  # ids already measured (a resumed run)
    started: str  # when the run first started
    last_sequence: int  # numbering continues from here
    last_load: int  # so does the numbering of model loads (warm-up record ids carry it)
    measured_before: int


_LOAD_NUMBER = re.compile(r"-load(\d+)$")


def _open_run(config: ExperimentConfig, inputs: dict[str, str], output_root: Path, resume: Path | None) -> OpenedRun:
    """A new run directory, or the one being resumed; locked for this process either way."""
    if resume is None:
        run = RunDirectory.create(output_root, config.name)
        return OpenedRun(run, run.lock(), True, set(), utc_now(), 0, 0, 0)
    run = RunDirectory.open(resume)
    lock = run.lock()
    try:
        stored = run.read(CONFIG_FILE)
        _check_same_experiment(resume, stored, config, inputs)
        run.repair_tail()
        records = run.records()
    except BaseException:
        lock.release()
        raise
    measured = [record for record in records if record["phase"] == "measure"]
    done = {record["record_id"] for record in measured if not record.get("error")}
    loads = [int(match.group(1)) for record in records if record["phase"] == "warmup"
             and (match := _LOAD_NUMBER.search(record["record_id"]))]
    loads.append(sum(1 for phase in run.phases() if phase.get("phase") == "load"))
    return OpenedRun(run, lock, False, done, stored.get("written", utc_now()),
                     max((record.get("sequence", 0) for record in records), default=0), max(loads), len(measured))


def _check_same_experiment(resume: Path, stored: dict[str, Any], config: ExperimentConfig,
                           inputs: dict[str, str]) -> None:
    """Resume only what the stored records measured: same config fields, same input contents."""
    if "inputs" in stored:
        if stored.get("fingerprint") == fingerprint(config, inputs):
            return
        changed = [f"{name} (content)" for name in differences(stored["inputs"], inputs)]
    else:  # a run written before inputs were fingerprinted: only the config fields can be compared
        changed = []
    stored_config = {key: value for key, value in stored.get("config", {}).items() if key not in NOT_FINGERPRINTED}
    changed = differences(stored_config, fingerprinted_config(config)) + changed
    if changed:
        raise ArtifactError(
            f"{resume}: was run with a different config; changed: {', '.join(changed)}. Resume only with the same "
            "config and inputs, or start a new run"
        )


def measure_device_bandwidth() -> dict[str, Any] | None:
    """Copy bandwidth of the GPU, for the roofline (None on a machine without one), measured in a child process
    so that the models' engines start with all of the device's memory free."""
    import torch

    if not torch.cuda.is_available():
        return None
    return measure_copy_bandwidth_in_child("cuda")


def roofline(bandwidth: dict[str, Any] | None, records: list[dict[str, Any]],
             models_loaded: dict[str, Any]) -> dict[str, Any] | None:
    """Achieved decode tokens/s against the bandwidth limit of each model and mode (GPU runs only)."""
    if not bandwidth or not models_loaded:
        return None
    measured = [record for record in records if record["phase"] == "measure" and not record.get("error")]
    batch = {record["mode"]: record["batch_size"] for record in measured}
    context = average_context(records)
    return {"bandwidth": bandwidth, "context_tokens": context,
            "rows": roofline_table(models_loaded, decode_rates(records), bandwidth, context, batch)}


def run_experiment(config: ExperimentConfig, *, output_root: Path, resume: Path | None = None,
                   progress: Progress | None = None, data_mirror: Path | None = None,
                   overrides: Mapping[str, str] | None = None) -> RunOutcome:
    """`overrides`: the `--set` pairs the config was loaded with, stored so the report can show them."""
    session_started = time.perf_counter()
    progress = progress or SilentProgress()
    claim = get_claim(config.claim)
    # Everything a user can get wrong (prompts, model paths, prompt lengths, data files, configs, engine) is
    # checked before the run directory exists, so a mistake leaves no half-made run behind.
    started = time.perf_counter()
    plan = load_plan(config, data_mirror)
    handles = {model.name: with_local_tokenizer(resolve_model(model), data_mirror) for model in config.models}
    confounds = check_confounds(config, {name: architecture_facts(handle) for name, handle in handles.items()})
    engines = EngineFactory(config.engine)  # engine = "auto" may still fall back at the first load
    prompt_lengths = check_prompt_lengths(plan, handles, config.engine)
    inputs = input_fingerprints(config, handles)
    tokens_started = time.perf_counter()
    tokens = measure_config_tokens(config, claim, mirror=data_mirror)  # reads every data file: a bad one stops here
    tokens_s = time.perf_counter() - tokens_started

    opened = _open_run(config, inputs, output_root, resume)
    try:
        return _run_session(config, claim, opened, plan, handles, confounds, engines, progress,
                            prepared_s=time.perf_counter() - started - tokens_s, tokens=tokens, tokens_s=tokens_s,
                            inputs=inputs, prompt_lengths=prompt_lengths, overrides=dict(overrides or {}),
                            session_started=session_started)
    except (ArtifactError, OSError):
        if opened.created and not opened.run.file(TRIALS_FILE).exists():
            opened.lock.release()
            shutil.rmtree(opened.run.path, ignore_errors=True)  # nothing measured yet: leave no half-made run
        raise
    finally:
        opened.lock.release()


def _run_session(config: ExperimentConfig, claim: Claim, opened: OpenedRun, plan: Plan, handles: dict[str, Any],
                 confounds: dict[str, Any], engines: EngineFactory, progress: Progress, *, prepared_s: float,
                 tokens: dict[str, Any], tokens_s: float, inputs: dict[str, str],
                 prompt_lengths: dict[str, Any], overrides: dict[str, str], session_started: float) -> RunOutcome:
    started = time.perf_counter()
    run = opened.run
    run.write(CONFIG_FILE, {"fingerprint": fingerprint(config, inputs), "written": opened.started,
                            "config": config.to_dict(), "claim": claim_to_dict(claim), "inputs": inputs,
                            "prompt_lengths": prompt_lengths, "overrides": overrides})
    clock = PhaseClock(run)
    environment = capture_environment()
    if not run.file(ENVIRONMENT_FILE).exists():
        run.write(ENVIRONMENT_FILE, environment)  # the first session's; every session's is in sessions.jsonl
    session = begin_session(run, environment, measured_before=opened.measured_before)
    outcome = "failed"
    try:
        bandwidth = measure_device_bandwidth()
        if bandwidth is not None:
            run.write(BANDWIDTH_FILE, bandwidth)
        run.write(CONFOUNDS_FILE, confounds)
        run.write(PLAN_FILE, {"interleaved": plan.interleaved, "measured": planned_generations(plan)})
        for baseline, found in confounds.items():
            if found["confounded"]:
                progress.note(f"{baseline} is a confounded baseline: {found['summary']}")

        def record_engine() -> None:
            if engines.fallback_reason:
                progress.note(f"falling back to transformers: {engines.fallback_reason}")
            run.write(ENGINE_FILE, engines.record())

        engines.on_fallback = lambda reason: record_engine()
        record_engine()
        clock.record("prepare", prepared_s + time.perf_counter() - started)
        run.write(TOKENS_FILE, tokens)
        clock.record("tokens", tokens_s)

        labels_taken: set[str] = set()

        def snapshot(label: str) -> None:
            # One snapshot per model, round and mode: models alternating unit by unit would otherwise take one
            # (an nvidia-smi call) before every generation.
            if label not in labels_taken:
                labels_taken.add(label)
                append_telemetry(run, session, telemetry_snapshot(label))
            merge_models(run, loaded_info_dict(runner.model_info))

        progress.start(plan.measured_generations, f"{config.name}: {len(config.models)} models x {config.trials.measured} trials")
        runner = TrialRunner(
            plan, handles, engines, run, clock,
            variants=engine_variants(config.engine),
            variant_applies=lambda variant: variant == "default" or engines.name == "vllm",
            max_resident=engines.max_resident_models,
            progress=lambda label, count: progress.advance(label, count) if label.startswith("measure") else None,
            completed=opened.completed,
            snapshot=snapshot,
            sequence_start=opened.last_sequence,
            load_start=opened.last_load,
        )
        try:
            # Clocks while the GPU works, not only between blocks; each sample goes to disk as it is taken.
            with TelemetrySampler(lambda sample: append_telemetry(run, session, sample), "during trials"):
                infos = runner.execute()
        finally:
            append_telemetry(run, session, telemetry_snapshot("after trials"))
            merge_models(run, loaded_info_dict(runner.model_info))
        merge_models(run, loaded_info_dict(infos))
        for name, info in infos.items():  # a metric an engine could not provide, and how it was measured instead
            for gap in info.settings.get("measurement_gaps", []):
                progress.note(f"{name}: {gap}")
        after_trials: dict[str, Any] = {}
        if runner.recompiled:
            progress.note(f"{runner.recompiled} measured call(s) compiled a shape the warm-up had not covered and were timed "
                          "again (the first, compiling, call is not recorded); more trials.warmup_prompts avoids it")
            after_trials["recompiled_measured_calls"] = runner.recompiled
        if runner.first_call_reruns:
            progress.note(f"{runner.first_call_reruns} measured call(s) were the engine's first at their shape and were "
                          "timed again (the first call is not recorded)")
            after_trials["first_call_reruns"] = runner.first_call_reruns
        after_trials["shape_warmup_calls"] = runner.shape_warmups
        outliers = ttft_outliers_by_trial(run.records())
        if outliers:
            first, *later = (outliers[trial] for trial in sorted(outliers))
            if later and len(first) > max(len(calls) for calls in later):
                progress.note(f"{len(first)} first-trial call(s) had a time to first token well above the same prompt's "
                              f"other trials, more than any later trial ({[len(calls) for calls in later]}): consistent "
                              "with first-call cost; see engine.json ttft_outliers_by_trial")
            after_trials["ttft_outliers_by_trial"] = {str(trial): calls for trial, calls in sorted(outliers.items())}
        if runner.skipped_variants:
            progress.note(f"ablation skipped (it applies to vLLM, the run used {engines.name}): {runner.skipped_variants}")
            after_trials["skipped_variants"] = runner.skipped_variants
        if after_trials:
            run.write(ENGINE_FILE, {**engines.record(), **after_trials})
        # A rented GPU bills the whole session: what no phase covered gets its own line in the cost log.
        clock.record(OUTSIDE_PHASES, max(0.0, time.perf_counter() - session_started - sum(clock.totals.values())))
        outcome = "completed"
    except BaseException as error:
        outcome = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise
    finally:
        measured = sum(1 for record in run.records() if record["phase"] == "measure")
        end_session(run, session, outcome=outcome, measured_after=measured)

    return RunOutcome(run, finalize(run, clock=clock))


def rerender(path: Path) -> dict[str, Any]:
    """`artifact report`: finalize under the run directory's lock, so it never races a run still writing there."""
    run = RunDirectory.open(path)
    lock = run.lock()
    try:
        return finalize(run)
    finally:
        lock.release()


def finalize(run: RunDirectory, *, clock: PhaseClock | None = None) -> dict[str, Any]:
    """Analysis and reports from the files in the run directory alone: `artifact report` calls only this.

    During `artifact run` the analysis time is appended to the phase log (`clock`); a later re-render reads
    the same log, so it reproduces the same cost figures.
    """
    stored = run.read(CONFIG_FILE)
    config = config_from_resolved(stored["config"])
    tokens = run.read_optional(TOKENS_FILE)
    reference = None
    if tokens:
        counts = tokens["per_document"][config.tokens.reference]
        reference = ReferenceCorpus(chars=counts["chars"], tokens=counts["tokens"])
    records = run.records()
    if not any(record["phase"] == "measure" for record in records):
        raise ArtifactError(f"{run.file('trials.jsonl')}: no measured generations to analyse; the run stopped before "
                            "its first measured trial. Resume it with `artifact run CONFIG --resume RUN_DIR`.")
    claim = claim_from_dict(stored["claim"]) if "claim" in stored else get_claim(config.claim)
    started = time.perf_counter()
    plan = run.read_optional(PLAN_FILE)
    results = analyse(records, config, claim, reference=reference, confounds=run.read_optional(CONFOUNDS_FILE),
                      planned=None if plan is None else plan["measured"])
    if clock is not None:
        clock.record("analysis", time.perf_counter() - started)
    models_loaded = run.read_optional(MODELS_FILE) or {}
    environment = run.read_optional(ENVIRONMENT_FILE)
    telemetry = read_telemetry(run)
    accelerator = ran_on_accelerator(models_loaded, environment, config.engine.device)
    if config.smoke:
        mark_smoke(results["summary"])
    results.update({
        "run": {"directory": str(run.path), "config_name": config.name, "smoke": config.smoke,
                "description": config.description, "fingerprint": stored["fingerprint"], "started": stored["written"],
                "overrides": stored.get("overrides", {})},
        "config": stored["config"],
        "engine": run.read_optional(ENGINE_FILE),
        "models_loaded": models_loaded,
        "token_efficiency": None if tokens is None else tokens["summary"],
        "environment": environment,
        "telemetry": telemetry,
        "noise_warnings": noise_warnings(environment or {}, telemetry),
        "cost": cost_log(run.phases(), config, accelerator=accelerator)
                | {"warmup_by_model": warmup_by_model(run.phases(), models_loaded)},
        "roofline": roofline(run.read_optional(BANDWIDTH_FILE), records, models_loaded),
        "harness_overhead": harness_overhead(run.phases(), records),
        "samples": sample_outputs(records, {model.name: model.weights for model in config.models}, _prompt_texts(config)),
        "sessions": session_summary(run),
    })
    run.write(RESULTS_FILE, results)
    render_reports(run.path, results)
    return results



SMOKE_LABEL = "SMOKE RUN: tiny models, a pipeline check, not evidence about Swallow"


def mark_smoke(summary: dict[str, Any]) -> None:
    """The original plan's summary keys are read by scripts that know nothing of smoke runs: say it in them."""
    summary["smoke"] = True
    if "smoke" not in str(summary.get("validation_type", "")).lower():
        summary["validation_type"] = f"{summary.get('validation_type', '')} ({SMOKE_LABEL})".strip()


def _prompt_texts(config: ExperimentConfig) -> dict[str, str]:
    """Prompt texts for the report's samples; a re-render on a machine without the prompts file shows ids only."""
    try:
        return {prompt.id: prompt.text for prompt in load_prompts(config.generation.prompts)}
    except (ArtifactError, OSError):
        return {}
