"""The trial runner: loads models, runs warm-ups and measured blocks in plan order, writes one record per
generation as it happens. It owns timing, the same way for every engine: synchronise, then a monotonic clock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from artifact.config import EngineSettings
from artifact.engines.base import Engine, GenerationOutput, GenerationRequest, LoadedModelInfo, ModelHandle
from artifact.errors import EngineError, FixedTextMismatchError, LengthMismatchError
from artifact.measure.warmup import ShapeLedger, measured_calls
from artifact.plan import Block, Plan
from artifact.store import RunDirectory, utc_now

ProgressCallback = Callable[[str, int], None]


@dataclass
class PhaseClock:
    """Wall-clock of each phase, appended to the run directory for the cost log."""

    run: RunDirectory
    totals: dict[str, float] = field(default_factory=dict)

    def record(self, phase: str, seconds: float, **details: Any) -> None:
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds
        self.run.append_phase({"phase": phase, "seconds": round(seconds, 6), "at": utc_now(), **details})


FIXED_TEXT_MISMATCH = "fixed-text mismatch"


def expected_tokens(request: GenerationRequest, output: GenerationOutput) -> int:
    """Free generation: the forced length. Fixed text: the tokens of the continuation in this model's tokenization."""
    if request.continuation is not None and output.reference_token_ids is not None:
        return len(output.reference_token_ids)
    return request.max_new_tokens


def fixed_text_error(request: GenerationRequest, output: GenerationOutput, text: str) -> str | None:
    """Why a fixed-text generation did not write exactly the reference text (None when it did).

    Both are checked: the emitted ids are the reference ids (each step took its input from the reference), and
    the decoded emitted ids are the reference text, character for character (so every model wrote the same text).
    """
    if request.continuation is None:
        return None
    if output.reference_token_ids is None:
        return f"{FIXED_TEXT_MISMATCH}: the engine did not report the reference ids it was to emit"
    emitted, reference = tuple(output.output_token_ids), tuple(output.reference_token_ids)
    if emitted != reference:
        where = next((i for i, (a, b) in enumerate(zip(emitted, reference)) if a != b), min(len(emitted), len(reference)))
        return (f"{FIXED_TEXT_MISMATCH}: emitted ids differ from the reference ids at token {where} "
                f"({len(emitted)} emitted, {len(reference)} expected)")
    if text != request.continuation:
        where = next((i for i, (a, b) in enumerate(zip(text, request.continuation)) if a != b),
                     min(len(text), len(request.continuation)))
        return (f"{FIXED_TEXT_MISMATCH}: the decoded tokens differ from the reference text at character {where}: "
                f"{text[max(0, where - 10):where + 10]!r} vs {request.continuation[max(0, where - 10):where + 10]!r} "
                "(the tokenizer does not write this text back verbatim)")
    return None


def build_record(block: Block, request: GenerationRequest, output: GenerationOutput, text: str, call_wall_s: float,
                 batch_size: int, sequence: int, engine_name: str, record_id: str | None = None,
                 synthetic_weights: bool = False) -> dict[str, Any]:
    """One generation. `e2e_s` and `ttft_s` share one start, the engine's, taken after the prompts were
    tokenised and moved to the device; `call_wall_s` is the runner's clock around the whole call.

    A fixed-text record has the same fields: its text is the emitted reference text (verified), its tokens the
    reference's in this model's tokenization. `synthetic_weights`: the model has random weights, so the text of a
    free generation is meaningless (its characters must not be shown as a result); fixed text is unaffected."""
    output_tokens = len(output.output_token_ids)
    expected = expected_tokens(request, output)
    e2e_s = output.finished_s if output.finished_s is not None else call_wall_s
    error = output.error or fixed_text_error(request, output, text)
    if error is None and output_tokens != expected:
        error = f"length mismatch: expected {expected} new tokens, engine returned {output_tokens}"
    first = output.first_token_s
    return {
        "record_id": record_id or request.request_id,
        "sequence": sequence,
        "phase": block.phase,
        "trial": block.trial,
        "model": block.model,
        "mode": block.mode,
        "variant": block.variant,
        "position": block.position,  # of this model within its group (plan.py: counterbalanced order)
        "engine": engine_name,
        "prompt_id": request.prompt_id,
        "batch_size": batch_size,
        "seed": request.seed,
        "prompt_tokens": output.prompt_tokens,
        "expected_output_tokens": expected,
        "output_tokens": output_tokens,
        "ttft_s": first,
        "e2e_s": e2e_s,
        "call_wall_s": call_wall_s,
        "decode_s": None if first is None else e2e_s - first,
        "output_text": text,
        "output_chars": len(text),
        "output_japanese_chars": japanese_chars(text),
        "output_bytes": len(text.encode("utf-8")),
        "text_source": "reference" if request.continuation is not None else "generated",
        "synthetic_weights": synthetic_weights,
        "error": error,
        "at": utc_now(),
    }


# Hiragana, katakana (with half-width forms), kanji (CJK unified + extension A + compatibility) and Japanese
# punctuation (CJK symbols and punctuation: 、。「」『』〜々〆 ..., and the full-width punctuation of FF01-FF65).
_JAPANESE = re.compile(
    r"[\u3041-\u309F\u30A0-\u30FF\u31F0-\u31FF\uFF66-\uFF9F\u4E00-\u9FFF\u3400-\u4DBF\uF900-\uFAFF"
    r"\u3001-\u303F\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]"
)


def japanese_chars(text: str) -> int:
    """Japanese-script characters in `text`: hiragana, katakana, kanji and Japanese punctuation (not Latin
    letters, digits, ASCII punctuation or spaces). What "Japanese characters" counts wherever it is reported."""
    return len(_JAPANESE.findall(text))


class TrialRunner:
    """Runs a plan. Engines are created per model by `engine_factory`; at most `max_resident` stay loaded."""

    def __init__(self, plan: Plan, handles: dict[str, ModelHandle], engine_factory: Callable[[EngineSettings], Engine],
                 run: RunDirectory, clock: PhaseClock, *, variants: dict[str, EngineSettings],
                 variant_applies: Callable[[str], bool] = lambda variant: True, max_resident: int | None = None,
                 progress: ProgressCallback | None = None, completed: set[str] | None = None,
                 snapshot: Callable[[str], None] | None = None, sequence_start: int = 0,
                 load_start: int = 0) -> None:
        self.plan = plan
        self.handles = handles
        self.engine_factory = engine_factory
        self.variants = variants
        self.variant_applies = variant_applies
        self.skipped_variants: dict[str, int] = {}
        self.run = run
        self.clock = clock
        self.max_resident = max_resident
        self.progress = progress or (lambda label, count: None)
        self.completed = completed or set()
        self.snapshot = snapshot or (lambda label: None)
        self.loaded: dict[tuple[str, str], Engine] = {}
        self.loads = load_start  # a resumed run numbers its loads on, so warm-up ids stay unique
        self.recompiled = 0  # measured calls served again because they compiled a shape warm-up had not covered
        self.first_call_reruns = 0  # measured calls served again because their shape was new to the loaded engine
        self.shape_warmups = 0  # untimed calls that covered shapes the plan's warm-up blocks left out
        self.ledgers: dict[Engine, ShapeLedger] = {}
        self.model_info: dict[str, LoadedModelInfo] = {}
        self.sequence = sequence_start  # continues the numbering of a resumed run

    def execute(self) -> dict[str, LoadedModelInfo]:
        try:
            for block in self.plan.measured:
                if all(request.request_id in self.completed for request in block.requests):
                    self.progress(block.key, len(block.requests))
                    continue
                if not self.variant_applies(block.variant):
                    self.skipped_variants[block.variant] = self.skipped_variants.get(block.variant, 0) + len(block.requests)
                    self.progress(block.key, len(block.requests))
                    continue
                engine = self._engine_for(block.model, block.variant)
                self.snapshot(f"before {block.key}")
                started = time.perf_counter()
                self._run_block(engine, block)
                self.clock.record("measure", time.perf_counter() - started, block=block.key)
        finally:
            for name in list(self.loaded):
                self._unload(name)
        return self.model_info

    def _engine_for(self, model: str, variant: str) -> Engine:
        key = (model, variant)
        if key in self.loaded:
            engine = self.loaded.pop(key)
            self.loaded[key] = engine  # most recently used goes last
            return engine
        while self.max_resident is not None and len(self.loaded) >= self.max_resident:
            self._unload(next(iter(self.loaded)))
        engine = self.engine_factory(self.variants[variant])
        self.loads += 1
        started = time.perf_counter()
        info = engine.load(self.handles[model])
        self.clock.record("load", time.perf_counter() - started, model=model, variant=variant)
        if variant == "default":
            self.model_info[model] = info
        self.loaded[key] = engine
        self.ledgers[engine] = ShapeLedger(engine)
        started = time.perf_counter()
        for block in self.plan.warmups[key]:
            self._run_block(engine, block)
        # trials.warmup = 0 asks for no warm-up at all: then nothing is covered, and first calls are re-run.
        covered = self.ledgers[engine].cover(measured_calls(self.plan, model, variant)) if self.plan.warmups[key] else 0
        self.shape_warmups += covered
        self.clock.record("warmup", time.perf_counter() - started, model=model, variant=variant, shape_calls=covered)
        return engine

    def _unload(self, key: tuple[str, str]) -> None:
        engine = self.loaded.pop(key)
        self.ledgers.pop(engine, None)
        engine.close()

    def _timed_generate(self, engine: Engine, requests: list[GenerationRequest], phase: str) -> tuple[list[GenerationOutput], float]:
        ledger = self.ledgers.get(engine)
        for _ in range(2):
            first_call = ledger is not None and ledger.is_new(requests)
            engine.synchronize()
            started = time.perf_counter()
            outputs = engine.generate(requests)
            engine.synchronize()
            elapsed = time.perf_counter() - started
            if ledger is not None:
                ledger.note(requests)
            if len(outputs) != len(requests):
                raise EngineError(f"engine {engine.name} returned {len(outputs)} outputs for {len(requests)} requests")
            # A measured call that had to compile a new shape, or was the engine's first at its shape, timed
            # one-off work: serve it again, once.
            if phase != "measure":
                break
            if engine.compiled_during_last_call():
                self.recompiled += 1
            elif first_call:
                self.first_call_reruns += 1
            else:
                break
        return outputs, elapsed

    def _run_block(self, engine: Engine, block: Block) -> None:
        if block.mode == "throughput":
            # One batch is one unit: a part-finished batch of an interrupted run is served again whole (the
            # analysis keeps the newest record of each id), never as a smaller batch.
            requests = list(block.requests)
            outputs, elapsed = self._timed_generate(engine, requests, block.phase)
            self._write(engine, block, [(request, output, elapsed) for request, output in zip(requests, outputs, strict=True)],
                        batch_size=len(requests))
        else:
            for request in block.requests:
                if request.request_id in self.completed:
                    continue
                outputs, elapsed = self._timed_generate(engine, [request], block.phase)
                self._write(engine, block, [(request, outputs[0], elapsed)], batch_size=1)

    def _write(self, engine: Engine, block: Block, timed: list[tuple[GenerationRequest, GenerationOutput, float]],
               batch_size: int) -> None:
        mismatches = []
        records = []
        for request, output, call_wall_s in timed:
            self.sequence += 1
            # Warm-ups repeat after every load of a model: the load number keeps their ids unique.
            record_id = f"{request.request_id}-load{self.loads}" if block.phase == "warmup" else request.request_id
            record = build_record(block, request, output, engine.decode(output.output_token_ids), call_wall_s,
                                  batch_size, self.sequence, engine.name, record_id,
                                  synthetic_weights=self.handles[block.model].synthetic)
            records.append(record)
            if record["error"]:
                mismatches.append(f"{request.request_id}: {record['error']}")
        # One append for the whole call: an interrupted run keeps a throughput batch whole or not at all.
        self.run.append_records(records)
        self.progress(block.key, len(records))
        fixed = [mismatch for mismatch in mismatches if FIXED_TEXT_MISMATCH in mismatch]
        if fixed:
            raise FixedTextMismatchError(
                f"{len(fixed)} fixed-text generation(s) did not write exactly the reference text, so the models would "
                f"not be timed on the same text; the run stops here (records so far are kept in "
                f"{self.run.file('trials.jsonl')}). First: {fixed[0]}"
            )
        if mismatches:
            raise LengthMismatchError(
                f"{len(mismatches)} generation(s) did not produce the forced length; the comparison would be unfair, "
                f"so the run stops here (records so far are kept in {self.run.file('trials.jsonl')}). First: "
                f"{mismatches[0]}"
            )


def loaded_info_dict(infos: dict[str, LoadedModelInfo]) -> dict[str, Any]:
    return {name: asdict(info) for name, info in infos.items()}
