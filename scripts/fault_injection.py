#!/usr/bin/env python3
"""Fault injection on a real run: kill -9 at random moments, resume, and compare with an uninterrupted run.

Runs `artifact run` (the shipped smoke config, made smaller with --set) as separate processes on the CPU:
1. one uninterrupted reference run;
2. for each kill point: a fresh run killed with SIGKILL after a random delay (uniform over the reference run's
   wall time), then `--resume` to the end; its records are compared with the reference: the same measured ids,
   no duplicate ids, the same output text and token counts per id, the same counts per model and mode, the same
   deterministic aggregates (generations per model, tokenizer efficiency), every loaded model in models.json;
3. two `--resume` processes started at once on one interrupted run: one must refuse with the holder's name;
4. every process runs with a planted Hugging Face token in its environment: no file any run wrote may hold it.

Prints one line per kill point and a JSON summary (also written with --json). Exit 1 when anything was lost.
Usage: PYTHONPATH=. python scripts/fault_injection.py --kills 10 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["generation.max_prompts=3", "generation.max_new_tokens=8", "trials.measured=2", "trials.warmup=1",
         "trials.warmup_prompts=2", 'trials.modes=["latency","throughput"]', "analysis.bootstrap_resamples=1000"]
PLANTED_TOKENS = {"HF_TOKEN": "hf_PLANTEDfaultinjectionTOKEN0001", "HUGGING_FACE_HUB_TOKEN": "hf_PLANTEDhubTOKEN0002"}


def command(config: str, extra: list[str]) -> list[str]:
    arguments = [sys.executable, "-m", "artifact.cli", "run", config]
    for pair in SMALL:
        arguments += ["--set", pair]
    return arguments + extra


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, **PLANTED_TOKENS, "PYTHONPATH": str(ROOT), "R2_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
            "PYTHONWARNINGS": "ignore"}


def run_dirs(output: Path) -> list[Path]:
    return sorted(path for path in output.iterdir() if path.is_dir()) if output.is_dir() else []


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    import warnings

    from artifact.store import RunDirectory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RunDirectory(run_dir).records()


def deterministic_view(run_dir: Path) -> dict[str, Any]:
    """What two runs of the same config must agree on (timings differ run to run; these do not)."""
    records = read_records(run_dir)
    measured = [record for record in records if record["phase"] == "measure"]
    results = json.loads((run_dir / "results.json").read_text())
    return {
        "ids": Counter(record["record_id"] for record in measured),
        "warmup_ids": Counter(record["record_id"] for record in records if record["phase"] == "warmup"),
        "outputs": {record["record_id"]: (record["output_text"], record["output_tokens"], record["prompt_tokens"])
                    for record in measured},
        "counts": Counter((record["model"], record["mode"]) for record in measured),
        "generations": {name: model["generations"] for name, model in results["models"].items()},
        "units": {(comparison["baseline"], mode, metric): interval["n"] for comparison in results["comparisons"]
                  for mode, ratios in comparison["ratios"].items() for metric, interval in ratios.items()},
        "token_efficiency": results["token_efficiency"],
        "models_loaded": sorted(json.loads((run_dir / "models.json").read_text())),
        "sessions": [(session["outcome"]) for session in results.get("sessions", [])],
    }


def lost(reference: dict[str, Any], resumed: dict[str, Any]) -> list[str]:
    problems = []
    duplicates = [key for key, count in (resumed["ids"] + resumed["warmup_ids"]).items() if count > 1]
    if duplicates:
        problems.append(f"duplicate ids {duplicates[:3]}")
    missing = set(reference["ids"]) - set(resumed["ids"])
    extra = set(resumed["ids"]) - set(reference["ids"])
    if missing or extra:
        problems.append(f"ids missing {sorted(missing)[:3]} extra {sorted(extra)[:3]}")
    differing = [key for key in reference["outputs"] if resumed["outputs"].get(key) != reference["outputs"][key]]
    if differing:
        problems.append(f"outputs differ for {differing[:3]}")
    for key in ("counts", "generations", "units", "token_efficiency", "models_loaded"):
        if resumed[key] != reference[key]:
            problems.append(f"{key} differ")
    return problems


def planted_in(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, token in PLANTED_TOKENS.items() if token.encode() in data]
    return found


def kill_point(config: str, work: Path, env: dict[str, str], delay: float, after_records: int | None,
               reference: dict[str, Any]) -> dict[str, Any]:
    """Kill after `delay` seconds, or (after_records) as soon as that many records are on disk plus `delay`."""
    output = work / "runs"
    process = subprocess.Popen(command(config, ["--output", str(output)]), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=ROOT)
    if after_records is not None:
        while process.poll() is None:
            dirs = run_dirs(output)
            if dirs and (dirs[0] / "trials.jsonl").is_file() and len(read_records(dirs[0])) >= after_records:
                break
            time.sleep(0.02)
    time.sleep(delay)
    finished_first = process.poll() is not None
    if not finished_first:
        process.send_signal(signal.SIGKILL)
    process.wait()
    dirs = run_dirs(output)
    started = bool(dirs) and (dirs[0] / "config.resolved.json").is_file()
    records_at_kill = len(read_records(dirs[0])) if started else 0
    extra = ["--resume", str(dirs[0])] if started else ["--output", str(output)]
    resumed = subprocess.run(command(config, extra), env=env, capture_output=True, text=True, cwd=ROOT)
    point = {"after_records": after_records, "delay_s": round(delay, 2), "killed": not finished_first, "run_dir_set_up": started,
             "records_at_kill": records_at_kill, "resume_rc": resumed.returncode,
             "stray_dirs": len(run_dirs(output)) - 1}
    if resumed.returncode != 0:
        point["lost"] = [f"resume failed: {resumed.stderr.strip().splitlines()[-1:]}"]
        return point
    final = run_dirs(output)[0] if started else run_dirs(output)[-1]
    view = deterministic_view(final)
    point["lost"] = lost(reference, view)
    point["sessions"] = view["sessions"]
    return point


def concurrent_resumes(config: str, work: Path, env: dict[str, str], delay: float, reference: dict[str, Any]) -> dict[str, Any]:
    """Interrupt a run, then start two resumes of it at the same moment."""
    output = work / "runs"
    process = subprocess.Popen(command(config, ["--output", str(output)]), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=ROOT)
    # Killed once the first records are on disk, so there is a run directory with work left to resume.
    deadline = time.monotonic() + delay
    while process.poll() is None and time.monotonic() < deadline:
        dirs = run_dirs(output)
        if dirs and (dirs[0] / "trials.jsonl").is_file() and len(read_records(dirs[0])) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    dirs = run_dirs(output)
    if not dirs or not (dirs[0] / "config.resolved.json").is_file():
        return {"lost": [], "skipped": "the run ended or was killed before its directory was set up"}
    both = [subprocess.Popen(command(config, ["--resume", str(dirs[0])]), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    outcomes = [(process.wait(), process.stderr.read()) for process in both]
    codes = sorted(code for code, _ in outcomes)
    refused = [err for code, err in outcomes if code == 2]
    result = {"return_codes": codes, "refusal": refused[0].strip().splitlines()[-1] if refused else None}
    result["lost"] = lost(reference, deterministic_view(dirs[0])) if 0 in codes else ["no resume finished"]
    # Correct outcomes: one resume works while the other refuses naming the holder, or (when one finished before
    # the other reached the lock) both succeed one after the other. Either way no record may be doubled.
    if codes == [0, 2] and "in use by another artifact process" not in refused[0]:
        result["lost"].append(f"the refusal does not name the holder: {refused[0]!r}")
    elif codes not in ([0, 2], [0, 0]):
        result["lost"].append(f"unexpected return codes {codes}: {[err[-300:] for _, err in outcomes]}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kill points (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", default="smoke")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--work", type=Path, help="keep the run directories here (default: a temporary folder)")
    parser.add_argument("--cache", type=Path, help="R2_CACHE_DIR for the runs (default: WORK/cache; the tiny pair is "
                                                   "built there once)")
    arguments = parser.parse_args()
    generator = random.Random(arguments.seed)
    with tempfile.TemporaryDirectory(prefix="fault-injection-") as temporary:
        work = arguments.work or Path(temporary)
        env = environment(arguments.cache or work / "cache")
        started = time.monotonic()
        reference_run = subprocess.run(command(arguments.config, ["--output", str(work / "reference")]), env=env,
                                       capture_output=True, text=True, cwd=ROOT)
        if reference_run.returncode != 0:
            print(reference_run.stderr, file=sys.stderr)
            return 2
        reference_s = time.monotonic() - started
        reference = deterministic_view(run_dirs(work / "reference")[0])
        points = []
        total_records = sum(reference["ids"].values()) + sum(reference["warmup_ids"].values())
        for index in range(arguments.kills):
            # Even points: a random moment of the whole run (set-up included); odd points: a random moment of the
            # trials (after a random number of records, plus up to half a second).
            if index % 2 == 0:
                after, delay = None, generator.uniform(0.0, reference_s)
            else:
                after, delay = generator.randint(1, total_records - 1), generator.uniform(0.0, 0.5)
            point = kill_point(arguments.config, work / f"kill-{index}", env, delay, after, reference)
            points.append(point)
            print(f"kill {index}: {json.dumps(point)}", flush=True)
        concurrent = concurrent_resumes(arguments.config, work / "concurrent", env, reference_s * 2, reference)
        print(f"two resumes at once: {json.dumps(concurrent)}", flush=True)
        leaked = planted_in(work)
        summary = {
            "reference_run_s": round(reference_s, 1),
            "reference_measured_records": sum(reference["ids"].values()),
            "kill_points": len(points),
            "killed_mid_run": sum(point["killed"] for point in points),
            "killed_after_set_up": sum(point["killed"] and point["run_dir_set_up"] for point in points),
            "total_records_per_run": total_records,
            "records_at_kill": [point["records_at_kill"] for point in points],
            "points_with_losses": sum(bool(point["lost"]) for point in points),
            "stray_run_dirs": sum(point["stray_dirs"] for point in points),
            "concurrent_resumes": concurrent,
            "planted_token_found_in": leaked,
        }
        print(json.dumps(summary, indent=2))
        if arguments.json:
            arguments.json.write_text(json.dumps({"summary": summary, "points": points}, indent=2))
        nothing_lost = not summary["points_with_losses"] and not concurrent.get("lost") and not leaked
        return 0 if nothing_lost else 1


if __name__ == "__main__":
    sys.exit(main())
