#!/usr/bin/env python3
"""Count the one-off work inside each measured call of a vLLM run on the CPU: oneDNN primitive creations.

A probe, not a benchmark of speed: on vLLM's CPU backend the first call at a new token count creates oneDNN
matmul primitives (see artifact/measure/warmup.py); oneDNN reports every creation when ONEDNN_VERBOSE is
`profile_create`. This runs an experiment in-process exactly as `artifact run` does, with two instruments:
VLLMEngine.generate captures file descriptor 1 around each call and counts the creations, and
TrialRunner._timed_generate marks which calls the runner times (of a re-timed call, the last one is recorded).
Times from this run carry the capture's overhead; use it for the counts, and `artifact run` for times.

  PYTHONPATH=$PWD VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \\
    .venv-vllm/bin/python scripts/count_first_call_work.py smoke --output /tmp/probe
Prints, per trial, the measured calls and how many of the recorded ones created primitives, and the creations
in the warm-up trials and the untimed shape-coverage calls.
"""

from __future__ import annotations

import os

os.environ["ONEDNN_VERBOSE"] = "profile_create"  # read by oneDNN at its first use, so before any import of torch

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class CreationCounter:
    """fd 1 goes to /dev/null, except around generate(), where it is read back and its creations counted."""

    def __init__(self) -> None:
        self.report = os.fdopen(os.dup(1), "w")  # this script's own output
        self.calls: list[dict[str, Any]] = []
        self.timed: list[int] | None = None  # indices of the calls of the current timed invocation
        sys.stdout.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)

    def count(self, generate: Any, requests: Any) -> Any:
        sys.stdout.flush()
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 1)
            try:
                return generate()
            finally:
                sys.stdout.flush()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.close(null)
                capture.seek(0)
                created = sum(1 for line in capture.read().decode(errors="replace").splitlines()
                              if "primitive,create" in line)
                if self.timed is not None:
                    self.timed.append(len(self.calls))
                self.calls.append({"id": requests[0].request_id, "batch": len(requests), "created": created,
                                   "timed": self.timed is not None, "recorded": False})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment config (name or path)")
    parser.add_argument("--output", type=Path, required=True, help="where the run directory goes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="SECTION.KEY=VALUE, as `artifact run`")
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from artifact.config import load_config, parse_overrides
    from artifact.engines.vllm import VLLMEngine
    from artifact.measure.trials import TrialRunner
    from artifact.pipeline import run_experiment

    counter = CreationCounter()
    generate, timed_generate = VLLMEngine.generate, TrialRunner._timed_generate

    def counted_generate(self: Any, requests: Any) -> Any:
        return counter.count(lambda: generate(self, requests), requests)

    def marked_timed_generate(self: Any, engine: Any, requests: Any, phase: str) -> Any:
        counter.timed = []
        try:
            return timed_generate(self, engine, requests, phase)
        finally:
            if counter.timed:
                counter.calls[counter.timed[-1]]["recorded"] = True
            counter.timed = None

    VLLMEngine.generate = counted_generate
    TrialRunner._timed_generate = marked_timed_generate
    config = load_config(options.config, parse_overrides(["engine.name=vllm", *options.overrides]))
    outcome = run_experiment(config, output_root=options.output)

    measured: dict[str, list[dict[str, Any]]] = defaultdict(list)
    untimed = [call for call in counter.calls if not call["timed"]]
    for call in counter.calls:
        if call["recorded"] and call["id"].startswith("measure-"):
            measured[call["id"].split("-")[1]].append(call)
    out = counter.report
    print(f"run directory: {outcome.run.path}", file=out)
    for trial, calls in sorted(measured.items()):
        creating = [call for call in calls if call["created"]]
        print(f"measured {trial}: {len(calls)} recorded calls, {len(creating)} created oneDNN primitives "
              f"({sum(call['created'] for call in creating)} in all)"
              + (f": {', '.join(call['id'] for call in creating)}" if creating else ""), file=out)
    reruns = sum(1 for call in counter.calls if call["timed"] and not call["recorded"])
    print(f"re-timed measured calls (first call discarded): {reruns}", file=out)
    warmups = [call for call in counter.calls if call["timed"] and call["id"].startswith("warmup-")]
    print(f"warm-up trial calls: {len(warmups)}, {sum(call['created'] for call in warmups)} primitive creations; "
          f"untimed shape-coverage calls: {len(untimed)}, {sum(call['created'] for call in untimed)} creations", file=out)
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
