#!/usr/bin/env python3
"""Cross-check the artifact's vLLM timing against vLLM's own latency benchmark (`vllm bench latency`).

A benchmark, not a test: it prints both tools' times per generation and their ratio. Both run the same
workload with the artifact's engine settings: one of the smoke config's tiny models (or any config and model),
one prompt of the benchmark set (its token count becomes the benchmark's --input-len), the configured number
of new tokens, batch size 1 (latency mode) or more copies of the prompt. The artifact side is the VLLMEngine
timed the way the trial runner times a call (synchronise, perf_counter around generate); the vLLM side is
`vllm.benchmarks.latency.main`, run in a child process (it builds its own `LLM`), repeats interleaved.

Differences that remain, by construction of vLLM's benchmark: it samples (temperature 1.0) where the artifact
is greedy, and it draws random prompt ids below 10,000; the tiny models have smaller vocabularies, so the child
caps that draw at the model's vocabulary (the timing loop is vLLM's own, untouched).

Run in the vLLM environment, for example:
  PYTHONPATH=$PWD VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \\
    .venv-vllm/bin/python scripts/crosscheck_vllm_latency.py --model tiny-expanded --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_MODE = "--as-vllm-bench"  # internal: this file, run as the child that executes vLLM's benchmark


def run_vllm_bench(vocab_size: int, bench_args: list[str]) -> None:
    """The child: vLLM's latency benchmark main, its prompt-id draw capped at the model's vocabulary."""
    import numpy as np
    from vllm.benchmarks import latency
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    draw = np.random.randint

    def capped_draw(high: int, *args: Any, **kwargs: Any) -> Any:
        return draw(min(high, vocab_size), *args, **kwargs)

    np.random.randint = capped_draw
    parser = FlexibleArgumentParser()
    latency.add_cli_args(parser)
    latency.main(parser.parse_args(bench_args))


def bench_arguments(settings: dict[str, Any], model_dir: str, input_len: int, output_len: int, batch_size: int,
                    iters: int, warmup_iters: int, output_json: Path) -> list[str]:
    """vLLM benchmark flags for the settings the artifact's engine really ran with (its `describe()`)."""
    return [
        "--model", model_dir, "--skip-tokenizer-init", "--disable-detokenize",
        "--dtype", settings["dtype"], "--max-model-len", str(settings["max_model_len"]),
        "--gpu-memory-utilization", str(settings["gpu_memory_utilization"]),
        "--tensor-parallel-size", str(settings["tensor_parallel_size"]),
        "--enable-chunked-prefill" if settings["enable_chunked_prefill"] else "--no-enable-chunked-prefill",
        "--no-enable-prefix-caching", "--seed", "0", "--load-format", settings["load_format"],
        *(["--enforce-eager"] if settings["enforce_eager"] else []),
        "--input-len", str(input_len), "--output-len", str(output_len), "--batch-size", str(batch_size),
        "--num-iters", str(iters), "--num-iters-warmup", str(warmup_iters), "--output-json", str(output_json),
    ]


def time_artifact(engine: Any, requests: list[Any], iters: int, warmup_iters: int) -> tuple[list[float], list[float]]:
    """Runner-clock seconds per call, and the engine's own end-to-end (last token) seconds per call."""
    for _ in range(warmup_iters):
        engine.generate(requests)
    walls, e2e = [], []
    for _ in range(iters):
        engine.synchronize()
        started = time.perf_counter()
        outputs = engine.generate(requests)
        engine.synchronize()
        walls.append(time.perf_counter() - started)
        finished = [output.finished_s for output in outputs if output.finished_s is not None]
        if finished:
            e2e.append(max(finished))
    return walls, e2e


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == BENCH_MODE:
        run_vllm_bench(int(sys.argv[2]), sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="smoke", help="experiment config (its engine settings, prompts, length)")
    parser.add_argument("--model", default="tiny-expanded", help="a model name of the config")
    parser.add_argument("--prompt-id", default=None, help="prompt of the config's prompt set (default: the first)")
    parser.add_argument("--batch-size", type=int, default=1, help="copies of the prompt in one call (1 = latency mode)")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per repeat and tool")
    parser.add_argument("--warmup-iters", type=int, default=10, help="untimed calls before them, per repeat and tool")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (artifact, vLLM, artifact, ...)")
    options = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from artifact.config import load_config, parse_overrides
    from artifact.corpora import load_prompts
    from artifact.engines.base import GenerationRequest
    from artifact.engines.vllm import VLLMEngine
    from artifact.models import resolve_model

    config = load_config(options.config, parse_overrides(["engine.name=vllm"]))
    models = {model.name: model for model in config.models}
    if options.model not in models:
        parser.error(f"--model {options.model!r} is not in config {options.config!r}; choose one of {sorted(models)}")
    prompts = load_prompts(config.generation.prompts)
    chosen = next((prompt for prompt in prompts if options.prompt_id in (None, prompt.id)), None)
    if chosen is None:
        parser.error(f"--prompt-id {options.prompt_id!r} is not in {config.generation.prompts}")
    new_tokens = config.generation.max_new_tokens
    requests = [GenerationRequest(f"x{index}", chosen.id, chosen.text, new_tokens, seed=index)
                for index in range(options.batch_size)]

    handle = resolve_model(models[options.model])
    engine = VLLMEngine(config.engine)
    info = engine.load(handle)
    settings = engine.describe()
    input_len = len(engine.encode(chosen.text))
    print(f"model {options.model} ({info.local_path}), prompt {chosen.id}: {input_len} tokens, {new_tokens} new, "
          f"batch {options.batch_size}; vllm {settings['vllm']}, dtype {settings['dtype']}, max_model_len "
          f"{settings['max_model_len']}, chunked prefill {settings['enable_chunked_prefill']}, enforce_eager "
          f"{settings['enforce_eager']}")
    rows = []
    try:
        for repeat in range(options.repeats):
            walls, e2e = time_artifact(engine, requests, options.iters, options.warmup_iters)
            with tempfile.TemporaryDirectory() as folder:
                output = Path(folder) / "latency.json"
                arguments = bench_arguments(settings, info.local_path, input_len, new_tokens, options.batch_size,
                                            options.iters, options.warmup_iters, output)
                subprocess.run([sys.executable, __file__, BENCH_MODE, str(info.vocab_size), *arguments], check=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
                               stdout=subprocess.DEVNULL)
                bench = json.loads(output.read_text())["latencies"]
            row = {"repeat": repeat, "artifact_median_s": statistics.median(walls),
                   "artifact_engine_e2e_median_s": statistics.median(e2e) if e2e else None,
                   "vllm_bench_median_s": statistics.median(bench)}
            row["ratio_artifact_over_vllm"] = row["artifact_median_s"] / row["vllm_bench_median_s"]
            rows.append(row)
            print(f"repeat {repeat}: artifact {row['artifact_median_s'] * 1e3:.2f} ms (engine e2e "
                  f"{(row['artifact_engine_e2e_median_s'] or float('nan')) * 1e3:.2f} ms), vllm bench latency "
                  f"{row['vllm_bench_median_s'] * 1e3:.2f} ms, ratio {row['ratio_artifact_over_vllm']:.3f}", flush=True)
    finally:
        engine.close()
    ratios = [row["ratio_artifact_over_vllm"] for row in rows]
    print(f"median over {len(rows)} repeats: artifact/vllm-bench = {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}); medians of {options.iters} calls each")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
