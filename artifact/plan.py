"""The plan: every generation of a run, with stable ids and seeds, computed before anything runs (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from artifact.config import ExperimentConfig, engine_variants
from artifact.corpora import Prompt
from artifact.engines.base import GenerationRequest


@dataclass(frozen=True)
class Block:
    """Requests for one model in one trial and mode. Latency mode serves them one by one (batch 1);
    throughput mode submits them all in one call."""

    phase: str  # "warmup" or "measure"
    trial: int
    model: str
    mode: str
    requests: tuple[GenerationRequest, ...]
    variant: str = "default"  # engine-settings variant (an ablation re-runs models with one setting changed)

    @property
    def key(self) -> str:
        suffix = "" if self.variant == "default" else f"-{self.variant}"
        return f"{self.phase}-t{self.trial}-{self.model}-{self.mode}{suffix}"


@dataclass(frozen=True)
class Plan:
    warmups: dict[tuple[str, str], tuple[Block, ...]]  # by (model, variant): run after each load, kept apart
    measured: tuple[Block, ...]
    model_order_by_trial: tuple[tuple[str, ...], ...]

    @property
    def measured_generations(self) -> int:
        return sum(len(block.requests) for block in self.measured)

    @property
    def warmup_generations_per_load(self) -> dict[tuple[str, str], int]:
        return {key: sum(len(block.requests) for block in blocks) for key, blocks in self.warmups.items()}


def request_seed(base_seed: int, trial: int, prompt_id: str) -> int:
    """The same seed for every model in a trial: identical sampling, whichever model runs."""
    digest = hashlib.sha256(f"{base_seed}:{trial}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def model_order(names: list[str], trial: int) -> tuple[str, ...]:
    """ABBA-style: forward order on even trials, reversed on odd ones, so linear drift cancels in pairs."""
    return tuple(names if trial % 2 == 0 else reversed(names))


def _requests(config: ExperimentConfig, prompts: list[Prompt], phase: str, trial: int, model: str, mode: str,
              variant: str = "default") -> tuple[GenerationRequest, ...]:
    tag = "" if variant == "default" else f"-{variant}"
    return tuple(
        GenerationRequest(
            request_id=f"{phase}-t{trial}-{model}-{mode}{tag}-{prompt.id}",
            prompt_id=prompt.id,
            prompt=prompt.text,
            max_new_tokens=config.generation.max_new_tokens,
            seed=request_seed(config.seed, trial, prompt.id),
            temperature=config.generation.temperature,
        )
        for prompt in prompts
    )


def selected_prompts(config: ExperimentConfig, prompts: list[Prompt]) -> list[Prompt]:
    limit = config.generation.max_prompts
    return prompts[:limit] if limit else list(prompts)


def build_plan(config: ExperimentConfig, prompts: list[Prompt]) -> Plan:
    chosen = selected_prompts(config, prompts)
    names = [model.name for model in config.models]
    orders = tuple(model_order(names, trial) for trial in range(config.trials.measured))
    variants = list(engine_variants(config.engine))
    # The main trials first, then each ablation variant with the same alternating structure.
    measured = tuple(
        Block("measure", trial, model, mode, _requests(config, chosen, "measure", trial, model, mode, variant), variant)
        for variant in variants
        for trial, order in enumerate(orders)
        for model in order
        for mode in config.trials.modes
    )
    warmup_prompts = chosen[: config.trials.warmup_prompts] if config.trials.warmup_prompts else chosen
    warmups = {
        (model, variant): tuple(
            Block("warmup", trial, model, mode, _requests(config, warmup_prompts, "warmup", trial, model, mode, variant), variant)
            for trial in range(config.trials.warmup)
            for mode in config.trials.modes
        )
        for model in names
        for variant in variants
    }
    return Plan(warmups=warmups, measured=measured, model_order_by_trial=orders)


def count_loads(plan: Plan, max_resident: int | None) -> int:
    """How many model loads running `plan` takes when at most `max_resident` models stay loaded (least recently
    used goes first), as the trial runner does. Each load is followed by that model's warm-up."""
    loaded: list[tuple[str, str]] = []
    loads = 0
    for block in plan.measured:
        key = (block.model, block.variant)
        if key in loaded:
            loaded.remove(key)
        else:
            loads += 1
            if max_resident is not None and len(loaded) >= max_resident:
                loaded.pop(0)
        loaded.append(key)
    return loads


def resident_limit(engine_name: str) -> int | None:
    """vLLM keeps one model on the device at a time (each instance reserves its memory share); so does an
    "auto" run, whose fallback keeps vLLM's limit. transformers keeps every model loaded."""
    return 1 if engine_name in ("vllm", "auto") else None
