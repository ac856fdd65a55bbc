"""GPU benchmark of the transformers engine's fast decode path against the bandwidth roofline.

Prints: the device, the measured copy bandwidth, then per model and mode the achieved decode tokens/s, the
roofline and the percentage; eager `generate()` for comparison; a greedy-token equality check of the fast path
against eager `generate()` (float32, small synthetic model, batch 1 and a left-padded batch); optionally the
wall time of a full `artifact run` with its verdicts and cost log. Writes everything as JSON to --out.

    PYTHONPATH=. python3 scripts/bench_gpu.py --out $OUT/bench.json \
        [--full-run CONFIG.toml [--full-run-set SECTION.KEY=VALUE] --data-mirror DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from artifact.architectures import architecture_dict, build_config, synthetic_model  # noqa: E402
from artifact.engines.compile_cache import configure_compile_cache  # noqa: E402
from artifact.engines import static_decode  # noqa: E402
from artifact.engines.static_decode import LENGTH_BUCKET, MIN_CACHE_LEN, StaticDecoder  # noqa: E402
from artifact.engines.windowed_attention import WINDOW_BUCKET, window_for  # noqa: E402
from artifact.measure.roofline import measure_copy_bandwidth, roofline_tokens_per_s  # noqa: E402


current_bucket_length = static_decode.bucket_length


def old_bucket_length(tokens: int, batch: int = 1) -> int:
    """The cache length before throughput batches got a tight one: at least 512 slots at every batch size."""
    return max(MIN_CACHE_LEN, -(-tokens // LENGTH_BUCKET) * LENGTH_BUCKET)


def kv_bytes_per_token(config: Any) -> int:
    """Bytes of keys and values one cached token holds across all layers (bf16)."""
    head_dim = int(config.hidden_size) // int(config.num_attention_heads)
    return 2 * int(config.num_hidden_layers) * int(config.num_key_value_heads) * head_dim * 2


def environment() -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
                            "torch": torch.__version__, "transformers": transformers.__version__,
                            "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count)
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def model_info(model: torch.nn.Module) -> dict[str, Any]:
    config = model.config
    return {
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "vocab_size": int(config.vocab_size),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "shape": {key: int(getattr(config, key)) for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                              "num_key_value_heads")},
    }


def time_fast(decoder: StaticDecoder, batch: int, prompt_tokens: int, new_tokens: int, vocab: int, repeats: int,
              device: torch.device, fixed: bool = False) -> dict[str, Any]:
    """Median of `repeats` timed runs after one untimed run. `fixed`: fixed-text timing (the step's next input is a
    reference token read on the device) instead of free generation; same prompt, same number of tokens."""
    generator = torch.Generator(device=device).manual_seed(0)
    ids = torch.randint(3, min(vocab, 32000), (batch, prompt_tokens), device=device, generator=generator)
    mask = torch.ones_like(ids)
    reference = torch.randint(3, min(vocab, 32000), (new_tokens,), device=device, generator=generator)

    def run(on_first_token: Any = None) -> torch.Tensor:
        if fixed:
            return decoder.generate_fixed(ids, mask, reference, on_first_token=on_first_token)
        return decoder.generate(ids, mask, new_tokens, on_first_token=on_first_token)

    started = time.perf_counter()
    if fixed:
        decoder.prepare(batch, prompt_tokens + new_tokens, greedy=True, forced=True)
    else:
        decoder.prepare(static_decode.bucket_batch(batch), prompt_tokens + new_tokens)  # the slot generate() will use
    prepare_s = time.perf_counter() - started
    first = run()  # one untimed run
    if fixed:
        assert torch.equal(first[0], reference), "fixed-text path did not emit the reference"
    runs = []
    for _ in range(repeats):
        marks: list[float] = []
        torch.cuda.synchronize()
        began = time.perf_counter()
        out = run(lambda: (torch.cuda.synchronize(), marks.append(time.perf_counter())))
        torch.cuda.synchronize()
        ended = time.perf_counter()
        assert out.shape == (batch, new_tokens)
        runs.append({"e2e_s": ended - began, "ttft_s": marks[0] - began,
                     "decode_tokens_per_s": batch * (new_tokens - 1) / (ended - marks[0]),
                     "e2e_tokens_per_s": batch * new_tokens / (ended - began)})
    runs.sort(key=lambda run: run["decode_tokens_per_s"])
    return {"prepare_s": prepare_s, "median": runs[len(runs) // 2], "runs": runs}


def time_eager(model: torch.nn.Module, batch: int, prompt_tokens: int, new_tokens: int, vocab: int,
               device: torch.device, static_cache: bool = False) -> dict[str, Any]:
    from transformers import GenerationConfig

    ids = torch.randint(3, min(vocab, 32000), (batch, prompt_tokens), device=device)
    config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=2,
                              pad_token_id=0, **({"cache_implementation": "static"} if static_cache else {}))
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)  # warm-up
        torch.cuda.synchronize()
        began = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {"e2e_s": seconds, "tokens": int(out.shape[1] - prompt_tokens), "e2e_tokens_per_s": batch * new_tokens / seconds}


def equality_check(device: torch.device, tuning: str | None = None, pack_projections: bool = False,
                   weight_layout: str = "out-major") -> dict[str, Any]:
    """Greedy tokens of the fast path vs eager generate(), float32, a small Llama-shaped synthetic model.
    `tuning`: check the inductor-compiled step with that tuning instead of the eager-kernel step;
    `pack_projections`: the step with q/k/v and gate/up packed; `weight_layout`: the projections stored so. The
    eager reference runs first, on the weights as built, so a packing or relayout that changed a value shows."""
    from transformers import GenerationConfig

    data = {**architecture_dict("llama-2-7b"), "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 8}
    model = synthetic_model(build_config(data), device, torch.float32, std=0.05)
    generator = torch.Generator(device=device).manual_seed(1)
    lengths = [37, 12, 64, 5]
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, width - length:] = torch.randint(3, 32000, (length,), device=device, generator=generator)
        mask[row, width - length:] = 1
    new = 64
    config = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=2, pad_token_id=0)
    singles = [(ids[row:row + 1, width - length:], mask[row:row + 1, width - length:])
               for row, length in enumerate(lengths)]
    with torch.inference_mode():  # the reference first, on the weights as built: packing and layout come after
        eager_batch = model.generate(ids, attention_mask=mask, generation_config=config)[:, width:]
        eager_singles = [model.generate(one, attention_mask=one_mask, generation_config=config)[:, one.shape[1]:]
                         for one, one_mask in singles]
    if tuning is not None:
        torch._dynamo.reset()
    decoder = StaticDecoder(model, eos_token_ids=[2], inductor=tuning is not None, tuning=tuning or "default",
                            pack_projections=pack_projections, weight_layout=weight_layout)
    result: dict[str, Any] = {}
    with torch.inference_mode():
        result["batch_equal_tokens"] = float((eager_batch == decoder.generate(ids, mask, new)).float().mean())
        result["batch1_equal_tokens"] = [float((eager == decoder.generate(one, one_mask, new)).float().mean())
                                         for eager, (one, one_mask) in zip(eager_singles, singles)]
    singles_equal = result["batch1_equal_tokens"]
    result["exact"] = result["batch_equal_tokens"] == 1.0 and all(value == 1.0 for value in singles_equal)
    result["step"] = ((f"inductor[{tuning}]" if tuning else "eager kernels")
                      + (", packed projections" if pack_projections else "")
                      + (f", weights {weight_layout}" if weight_layout != "out-major" else ""))
    return result


KERNEL_KINDS = (  # (kind, substrings of the kernel name), first match wins: inductor's own prefixes first, since
    # its fused kernels carry the names of the ops they absorbed ("triton_poi_fused__scaled_dot_product_..." is
    # the key/value cache write, not attention)
    ("pointwise (rotary, SiLU, residual, cache writes)", ("triton_poi",)),
    ("norm / reduction", ("triton_per", "triton_red")),
    ("matmul (weights)", ("triton_tem", "gemv", "gemm", "splitkreduce", "cutlass", "sm90_xmma", "nvjet")),
    ("attention", ("attention", "fmha", "flash", "sdpa", "softmax")),
    ("argmax / copies", ("argmax", "index", "copy", "memcpy", "memset", "fill")),
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    for kind, needles in KERNEL_KINDS:
        if any(needle in lowered for needle in needles):
            return kind
    return "other"


def profile_step(decoder: StaticDecoder, batch: int, prompt_tokens: int, new_tokens: int, weights_bytes: int,
                 kv_bytes_per_token: int) -> dict[str, Any]:
    """Where a captured decode step's time goes, averaged over the decode of one generation (prompt_tokens, then
    new_tokens - 1 steps, each with the attention window generation uses): kernels by kind from the profiler against
    the steps' own time from CUDA events; the rest is the gap between kernels."""
    from torch.profiler import ProfilerActivity, profile

    if new_tokens < 2:
        raise ValueError("a profile needs at least 2 new tokens (one decode step)")
    slot = decoder.prepare(batch, prompt_tokens + new_tokens)
    ids = torch.ones(batch, prompt_tokens, dtype=torch.long, device=decoder.device)
    steps = new_tokens - 1

    def prefill() -> None:
        with torch.inference_mode(), decoder.scope():
            decoder._prefill(slot, ids, torch.ones_like(ids))

    def decode() -> None:
        with torch.inference_mode(), decoder.scope():
            for index in range(1, new_tokens):
                decoder.advance(slot, prompt_tokens + index)

    prefill()
    decode()  # warm
    prefill()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    decode()
    end.record()
    torch.cuda.synchronize()
    step_ms = start.elapsed_time(end) / steps
    prefill()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        decode()
        torch.cuda.synchronize()
    kinds: dict[str, float] = {}
    kernels: dict[str, dict[str, float]] = {}
    for event in prof.key_averages():
        device_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
        if not device_us or event.key.startswith("cudaGraph"):
            continue
        per_step_ms = device_us / 1000 / steps
        kinds[kernel_kind(event.key)] = kinds.get(kernel_kind(event.key), 0.0) + per_step_ms
        kernels[event.key[:90]] = {"ms_per_step": per_step_ms, "calls_per_step": event.count / steps}
    busy = sum(kinds.values())
    top = dict(sorted(kernels.items(), key=lambda item: -item[1]["ms_per_step"])[:12])
    read_slots = sum(window_for(prompt_tokens + index, slot.length, decoder.window_bucket)
                     for index in range(1, new_tokens)) / steps
    bandwidth = {}
    if kinds.get("matmul (weights)"):
        bandwidth["matmul_gb_per_s"] = weights_bytes / (kinds["matmul (weights)"] / 1000) / 1e9
    if kinds.get("attention"):
        bandwidth["attention_gb_per_s"] = kv_bytes_per_token * batch * read_slots / (kinds["attention"] / 1000) / 1e9
    return {"batch": batch, "cache_len": slot.length, "attention_slots_read": read_slots, "step_ms": step_ms,
            "kernel_ms": busy, "gap_ms": step_ms - busy, "kinds_ms": kinds, "top_kernels": top, **bandwidth}


def full_run(config: Path, mirror: Path | None, out: Path, overrides: list[str] | None = None,
             runs: Path = Path("/tmp/bench-runs")) -> dict[str, Any]:
    """`artifact run CONFIG` in a child process, timed whole; `overrides` (SECTION.KEY=VALUE) go to its --set, so a
    variant of a shipped config (weight_layout = "in-major", say) runs without a config file of its own."""
    command = [sys.executable, "-m", "artifact.cli", "run", str(config), "--output", str(runs)]
    if mirror is not None:
        command += ["--data-mirror", str(mirror)]
    for override in overrides or []:
        command += ["--set", override]
    began = time.perf_counter()
    # The repository first, then what the caller had (packages installed with --target live there)
    python_path = os.pathsep.join(part for part in (str(REPO), os.environ.get("PYTHONPATH", "")) if part)
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": python_path})
    wall = time.perf_counter() - began
    (out.parent / "full_run.log").write_text(process.stdout + "\n--- stderr ---\n" + process.stderr[-200_000:])
    result: dict[str, Any] = {"command": " ".join(command), "wall_s": wall, "returncode": process.returncode}
    made = sorted(runs.glob("*"), key=lambda path: path.stat().st_mtime)
    if made:
        run = made[-1]
        for name in ("report.md", "results.json"):
            if (run / name).is_file():
                (out.parent / f"full_run_{name}").write_bytes((run / name).read_bytes())
        if (run / "results.json").is_file():
            results = json.loads((run / "results.json").read_text())
            result["cost"] = results.get("cost")
            result["verdicts"] = [comparison.get("verdict") for comparison in results.get("comparisons", [])]
            result["summary"] = results.get("summary")
            result["noise_floor"] = results.get("noise_floor")
            result["harness_overhead"] = results.get("harness_overhead")
            result["roofline"] = results.get("roofline")
        if (run / "trials.jsonl").is_file():
            from artifact.measure.roofline import average_context, decode_rates

            records = [json.loads(line) for line in (run / "trials.jsonl").read_text().split("\n") if line.strip()]
            result["decode_tokens_per_s"] = {f"{model}/{mode}": rate for (model, mode), rate in decode_rates(records).items()}
            result["average_context"] = average_context(records)
            (out.parent / "full_run_trials.jsonl").write_text("\n".join(json.dumps(r) for r in records))
        result["run_directory"] = str(run)
    print(process.stdout[-6000:])
    if process.returncode:
        print(process.stderr[-6000:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="swallow-7b,swallow-7b-nve,llama-2-7b")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--throughput-batch", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", default="llama-2-7b", help="models to time with eager generate() too ('' = none)")
    parser.add_argument("--eager-tokens", type=int, default=64)
    parser.add_argument("--inductor", default="", help="models to time with the inductor-compiled step too")
    parser.add_argument("--tunings", default="default",
                        help="inductor tunings to time for the --inductor models (default,coordinate-descent,max-autotune)")
    parser.add_argument("--fixed-text", action="store_true", help="also time fixed-text emission (batch 1) per variant")
    parser.add_argument("--equality-tunings", default="",
                        help="also check greedy equality of the inductor step with these tunings (fp32, small model)")
    parser.add_argument("--profile", default="",
                        help="tunings whose captured step to profile (batch 1 and the throughput batch) for --inductor models")
    parser.add_argument("--modes", default="latency,fixed_text,throughput",
                        help="which of latency, fixed_text (with --fixed-text), throughput to time")
    parser.add_argument("--cache-floor-before", action="store_true",
                        help="also time the first tuning's throughput batch with the old 512-slot cache floor (before/after)")
    parser.add_argument("--no-plain-graph", action="store_true",
                        help="skip the captured step of eager (uncompiled) kernels; time only the --inductor variants")
    parser.add_argument("--no-separate", action="store_true",
                        help="skip the inductor variants with separate projections; time only --packed / --in-major")
    parser.add_argument("--window-before", action="store_true",
                        help="also time the first tuning on the earlier path: attention over the whole static cache, "
                             "separate projections")
    parser.add_argument("--packed", action="store_true",
                        help="also time the first tuning with q/k/v and gate/up packed into one product each "
                             "(pack_projections = true, the engine's default), and check its greedy tokens")
    parser.add_argument("--in-major", action="store_true",
                        help="also time the first tuning packed with the projection weights stored in-major "
                             "(weight_layout = \"in-major\"), last, and check its greedy tokens")
    parser.add_argument("--full-run", type=Path, default=None, help="a config to run end to end with `artifact run`")
    parser.add_argument("--full-run-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a field of the --full-run config (repeatable), e.g. "
                             "engine.transformers.weight_layout=in-major")
    parser.add_argument("--data-mirror", type=Path, default=None)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    report: dict[str, Any] = {"environment": environment(), "compile_cache": configure_compile_cache()}
    print(json.dumps(report["environment"]), flush=True)
    report["bandwidth"] = measure_copy_bandwidth(device)
    bandwidth = report["bandwidth"]["gb_per_s"]
    print(f"copy bandwidth: {bandwidth:.0f} GB/s", flush=True)
    report["equality"] = [equality_check(device)]
    for tuning in [t for t in args.equality_tunings.split(",") if t]:
        report["equality"].append(equality_check(device, tuning))
    for wanted, layout in ((args.packed, "out-major"), (args.in_major, "in-major")):
        if wanted:
            report["equality"].append(equality_check(device, pack_projections=True, weight_layout=layout))
            for tuning in [t for t in args.equality_tunings.split(",") if t]:
                report["equality"].append(equality_check(device, tuning, pack_projections=True, weight_layout=layout))
    for check in report["equality"]:
        print("greedy equality vs eager generate (fp32):", check, flush=True)
    rows: list[dict[str, Any]] = []
    report["rows"] = rows
    report["profiles"] = []
    context = args.prompt_tokens + args.new_tokens / 2
    for name in [] if args.skip_models else [m for m in args.models.split(",") if m]:
        began = time.perf_counter()
        model = synthetic_model(build_config(architecture_dict(name)), device, torch.bfloat16)
        torch.cuda.synchronize()
        build_s = time.perf_counter() - began
        info = model_info(model)
        tunings = [tuning for tuning in args.tunings.split(",") if tuning] if name in args.inductor.split(",") else []
        # (label, inductor, tuning, attention window step, packed projections, weight layout)
        variants = [] if args.no_plain_graph else [("graph", False, "default", WINDOW_BUCKET, False, "out-major")]
        for tuning in [] if args.no_separate else tunings:
            variants.append((f"graph+inductor[{tuning}]", True, tuning, WINDOW_BUCKET, False, "out-major"))
            if args.window_before and tuning == tunings[0]:  # the earlier path: the model's own whole-cache attention
                variants.append((f"graph+inductor[{tuning}] whole-cache attention", True, tuning, 0, False, "out-major"))
        # Last, in this order: packing turns the model's weights into views of packed tensors for good, and the
        # in-major layout stores them transposed for good
        if args.packed and tunings:
            variants.append((f"graph+inductor[{tunings[0]}] packed projections", True, tunings[0], WINDOW_BUCKET, True,
                             "out-major"))
        if args.in_major and tunings:
            variants.append((f"graph+inductor[{tunings[0]}] packed, in-major", True, tunings[0], WINDOW_BUCKET, True,
                             "in-major"))
        # Eager generate() first, on the weights as loaded: the variants below pack and relayout them for good
        if name in args.eager.split(","):
            for mode, batch in (("latency", 1), ("throughput", args.throughput_batch)):
                timing = time_eager(model, batch, args.prompt_tokens, args.eager_tokens, info["vocab_size"], device)
                limit = roofline_tokens_per_s(info, bandwidth, args.prompt_tokens + args.eager_tokens / 2, batch)
                rows.append({"model": name, "engine": "eager generate()", "mode": mode, "batch": batch,
                             "e2e_tokens_per_s": timing["e2e_tokens_per_s"], "roofline_tokens_per_s": limit["tokens_per_s"],
                             "percent_e2e": 100 * timing["e2e_tokens_per_s"] / limit["tokens_per_s"],
                             "new_tokens": args.eager_tokens})
                print(f"{name:16} {'eager generate()':22} {mode:10} b={batch:<3} {timing['e2e_tokens_per_s']:9.1f} tok/s "
                      f"(end to end, {args.eager_tokens} new tokens)", flush=True)
        modes = [("latency", 1, False), ("throughput", args.throughput_batch, False)]
        if args.fixed_text:
            modes.insert(1, ("fixed_text", 1, True))
        modes = [mode for mode in modes if mode[0] in args.modes.split(",")]
        for label, inductor, tuning, window_bucket, pack_projections, weight_layout in variants:
            if inductor:
                torch._dynamo.reset()  # each tuning compiles its own kernels (the persistent cache keys on settings)
            decoder = StaticDecoder(model, eos_token_ids=[2], inductor=inductor, tuning=tuning, window_bucket=window_bucket,
                                    pack_projections=pack_projections, weight_layout=weight_layout)
            variant_modes = list(modes)
            if args.cache_floor_before and inductor and tuning == args.tunings.split(",")[0] and window_bucket:
                variant_modes.append(("throughput, cache floor 512 (before)", args.throughput_batch, False))
            for mode, batch, fixed in variant_modes:
                static_decode.bucket_length = old_bucket_length if "before" in mode else current_bucket_length
                timing = time_fast(decoder, batch, args.prompt_tokens, args.new_tokens, info["vocab_size"], args.repeats,
                                   device, fixed=fixed)
                limit = roofline_tokens_per_s(info, bandwidth, context, batch)
                achieved = timing["median"]["decode_tokens_per_s"]
                row = {"model": name, "engine": f"static+{label}", "mode": mode, "batch": batch,
                       "achieved_decode_tokens_per_s": achieved, "e2e_tokens_per_s": timing["median"]["e2e_tokens_per_s"],
                       "ttft_s": timing["median"]["ttft_s"], "roofline_tokens_per_s": limit["tokens_per_s"],
                       "percent": 100 * achieved / limit["tokens_per_s"], "prepare_s": timing["prepare_s"],
                       "build_s": build_s, "runs": timing["runs"]}
                rows.append(row)
                print(f"{name:16} {row['engine']:22} {mode:10} b={batch:<3} {achieved:9.1f} tok/s  roofline "
                      f"{limit['tokens_per_s']:9.1f}  {row['percent']:5.1f}%  (capture/compile {timing['prepare_s']:.1f} s)",
                      flush=True)
                args.out.write_text(json.dumps(report, indent=2))  # a call cut off by its time limit keeps what ran
            static_decode.bucket_length = current_bucket_length
            if inductor and tuning in args.profile.split(","):
                kv_per_token = kv_bytes_per_token(model.config)
                for batch in (1, args.throughput_batch):
                    rows_run = 1 if batch == 1 else 32
                    matmul_bytes = info["weight_bytes"] - info["vocab_size"] * info["shape"]["hidden_size"] * 2  # not the embedding
                    try:
                        found = profile_step(decoder, rows_run, args.prompt_tokens, args.new_tokens, matmul_bytes,
                                             kv_per_token)
                    except Exception as error:  # a profiler problem must not cost the timings above
                        print(f"profile {name} {tuning} b={rows_run} failed: {error!r}", flush=True)
                        continue
                    found.update(model=name, tuning=tuning, attention_window=window_bucket,
                                 packed_projections=pack_projections, weight_layout=weight_layout)
                    report["profiles"].append(found)
                    args.out.write_text(json.dumps(report, indent=2))
                    print(f"profile {name} {tuning} window {window_bucket or 'off'} "
                          f"{'packed' if pack_projections else 'separate'} {weight_layout} b={rows_run} cache {found['cache_len']} (attention reads "
                          f"{found['attention_slots_read']:.0f} slots): step {found['step_ms']:.3f} ms,"
                          f" kernels {found['kernel_ms']:.3f} ms, gap {found['gap_ms']:.3f} ms; "
                          + ", ".join(f"{kind} {ms:.3f}" for kind, ms in sorted(found["kinds_ms"].items(), key=lambda x: -x[1]))
                          + (f"; matmul {found['matmul_gb_per_s']:.0f} GB/s" if "matmul_gb_per_s" in found else "")
                          + (f"; attention {found['attention_gb_per_s']:.0f} GB/s" if "attention_gb_per_s" in found else ""),
                          flush=True)
            decoder.release()
            del decoder
        del model
        torch.cuda.empty_cache()
    args.out.write_text(json.dumps(report, indent=2))
    if args.full_run is not None:
        report["full_run"] = full_run(args.full_run, args.data_mirror, args.out, args.full_run_set)
        args.out.write_text(json.dumps(report, indent=2))
        summary = {key: value for key, value in report["full_run"].items() if key != "verdicts"}
        print("full run:", json.dumps(summary, indent=1))
        print("verdicts:", json.dumps(report["full_run"].get("verdicts"), indent=1)[:4000])


if __name__ == "__main__":
    main()
