"""The plan: every generation of a run, with stable ids, seeds and positions, computed before anything runs (pure).

Order and blocking. Each group of generations that compares the models (one unit within a round where the
engine keeps every model resident; one round where it keeps one) runs the models in an order taken from a
Williams design: every model is in every position equally often once the groups fill whole squares, and
each model follows every other equally often (first-order carry-over balanced). The position of a
generation within its group is recorded with it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from artifact.config import ExperimentConfig, engine_variants
from artifact.corpora import Prompt
from artifact.engines.base import GenerationRequest
from artifact.errors import ConfigError

FIXED_TEXT = "fixed_text"
# Modes whose requests are served one at a time, so models can alternate per unit.
PER_UNIT_MODES = ("latency", FIXED_TEXT)


@dataclass(frozen=True)
class Block:
    """Requests for one model in one trial and mode (and, when models alternate per unit, one unit). Latency and
    fixed-text modes serve them one by one (batch 1); throughput mode submits them all in one call."""

    phase: str  # "warmup" or "measure"
    trial: int
    model: str
    mode: str
    requests: tuple[GenerationRequest, ...]
    variant: str = "default"  # engine-settings variant (an ablation re-runs models with one setting changed)
    position: int = 0  # 0-based position of this block's model within its group (see the module docstring)
    unit: str | None = None  # the unit, when the models alternate per unit

    @property
    def key(self) -> str:
        """Model, round and mode (not the unit): progress, the phase log and telemetry go by this."""
        suffix = "" if self.variant == "default" else f"-{self.variant}"
        return f"{self.phase}-t{self.trial}-{self.model}-{self.mode}{suffix}"


@dataclass(frozen=True)
class Group:
    """Models compared side by side: one unit of a round (interleaved) or a whole round (blocks)."""

    variant: str
    trial: int
    mode: str
    unit: str | None
    order: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    warmups: dict[tuple[str, str], tuple[Block, ...]]  # by (model, variant): run after each load, kept apart
    measured: tuple[Block, ...]
    groups: tuple[Group, ...]
    interleaved: bool  # models alternate per unit within a round (all resident) rather than per round

    @property
    def measured_generations(self) -> int:
        return sum(len(block.requests) for block in self.measured)

    @property
    def warmup_generations_per_load(self) -> dict[tuple[str, str], int]:
        return {key: sum(len(block.requests) for block in blocks) for key, blocks in self.warmups.items()}

    @property
    def model_order_by_trial(self) -> tuple[tuple[str, ...], ...]:
        """The order of each round's first group (default variant, first mode)."""
        seen: dict[int, tuple[str, ...]] = {}
        for group in self.groups:
            if group.variant == "default":
                seen.setdefault(group.trial, group.order)
        return tuple(seen[trial] for trial in sorted(seen))

    def position_counts(self, mode: str) -> dict[str, list[int]]:
        """For one mode: how many groups put each model in each position (equal counts = balanced)."""
        groups = [group for group in self.groups if group.mode == mode and group.variant == "default"]
        if not groups:
            return {}
        size = len(groups[0].order)
        counts: dict[str, Counter[int]] = {name: Counter() for name in groups[0].order}
        for group in groups:
            for position, model in enumerate(group.order):
                counts[model][position] += 1
        return {model: [counter[position] for position in range(size)] for model, counter in counts.items()}

    def balanced(self, mode: str) -> bool:
        counts = self.position_counts(mode)
        return all(len(set(row)) == 1 for row in counts.values())


def williams_orders(count: int) -> list[list[int]]:
    """Rows of a Williams design for `count` treatments: each a permutation; together every treatment sits in
    every position equally often and follows every other treatment equally often. An even count needs
    `count` rows, an odd count `2 * count` (the square and its mirror image)."""
    if count < 1:
        raise ValueError("williams_orders: need at least one treatment")
    first = [0]
    low, high = 1, count - 1
    while len(first) < count:
        first.append(low)
        low += 1
        if len(first) < count:
            first.append(high)
            high -= 1
    rows = [[(value + shift) % count for value in first] for shift in range(count)]
    if count % 2:
        rows += [list(reversed(row)) for row in rows]
    return rows


def request_seed(base_seed: int, trial: int, prompt_id: str) -> int:
    """The same seed for every model in a trial: identical sampling, whichever model runs."""
    digest = hashlib.sha256(f"{base_seed}:{trial}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _request(config: ExperimentConfig, unit: Prompt, phase: str, trial: int, model: str, mode: str,
             variant: str) -> GenerationRequest:
    tag = "" if variant == "default" else f"-{variant}"
    return GenerationRequest(
        request_id=f"{phase}-t{trial}-{model}-{mode}{tag}-{unit.id}",
        prompt_id=unit.id,
        prompt=unit.text,
        max_new_tokens=config.generation.max_new_tokens,
        seed=request_seed(config.seed, trial, unit.id),
        temperature=config.generation.temperature,
        continuation=unit.continuation if mode == FIXED_TEXT else None,
    )


def _requests(config: ExperimentConfig, units: list[Prompt], phase: str, trial: int, model: str, mode: str,
              variant: str = "default") -> tuple[GenerationRequest, ...]:
    return tuple(_request(config, unit, phase, trial, model, mode, variant) for unit in units)


def selected_prompts(config: ExperimentConfig, prompts: list[Prompt]) -> list[Prompt]:
    limit = config.generation.max_prompts
    return prompts[:limit] if limit else list(prompts)


def resident_limit(engine_name: str) -> int | None:
    """vLLM keeps one model on the device at a time (each instance reserves its memory share); so does an
    "auto" run, whose fallback keeps vLLM's limit. transformers keeps every model loaded."""
    return 1 if engine_name in ("vllm", "auto") else None


def _units_by_mode(config: ExperimentConfig, prompts: list[Prompt],
                   reference_units: list[Prompt] | None) -> dict[str, list[Prompt]]:
    chosen = selected_prompts(config, prompts)
    units = {}
    for mode in config.trials.modes:
        if mode == FIXED_TEXT:
            if not reference_units:
                raise ConfigError(f"{config.source}: mode \"fixed_text\" needs reference texts (the documents every "
                                  "model emits), and none were given")
            if any(unit.continuation is None for unit in reference_units):
                raise ConfigError(f"{config.source}: every fixed_text unit needs a continuation (the reference text)")
            units[mode] = list(reference_units)
        else:
            units[mode] = chosen
    return units


def build_plan(config: ExperimentConfig, prompts: list[Prompt], reference_units: list[Prompt] | None = None) -> Plan:
    """Latency and throughput modes use `prompts`; fixed_text mode uses `reference_units` (documents with their
    continuation). Where every model stays resident (transformers), per-unit modes alternate the models unit by
    unit inside each round; otherwise (vLLM, one model resident) each round runs each model's block in turn."""
    units = _units_by_mode(config, prompts, reference_units)
    names = [model.name for model in config.models]
    rows = williams_orders(len(names))
    interleaved = resident_limit(config.engine.name) is None
    variants = list(engine_variants(config.engine))
    measured: list[Block] = []
    groups: list[Group] = []

    def add_group(variant: str, trial: int, mode: str, order: tuple[str, ...], chosen: list[Prompt], unit: str | None) -> None:
        groups.append(Group(variant, trial, mode, unit, order))
        for position, model in enumerate(order):
            measured.append(Block("measure", trial, model, mode, _requests(config, chosen, "measure", trial, model, mode,
                                                                            variant), variant, position, unit))

    for variant in variants:  # the main trials first, then each ablation variant with the same structure
        for trial in range(config.trials.measured):
            round_order = tuple(names[index] for index in rows[trial % len(rows)])
            if interleaved:
                for mode in config.trials.modes:
                    if mode in PER_UNIT_MODES:
                        # Row (round + unit) mod rows: within a round the units cycle through the design's rows,
                        # and each unit moves to the next row in the next round (its position changes too).
                        for index, unit in enumerate(units[mode]):
                            row = rows[(trial + index) % len(rows)]
                            add_group(variant, trial, mode, tuple(names[i] for i in row), [unit], unit.id)
                    else:
                        add_group(variant, trial, mode, round_order, units[mode], None)
            else:
                # One model resident: a model runs all its modes before the next loads (fewer loads).
                for mode in config.trials.modes:
                    groups.append(Group(variant, trial, mode, None, round_order))
                for position, model in enumerate(round_order):
                    for mode in config.trials.modes:
                        measured.append(Block("measure", trial, model, mode,
                                              _requests(config, units[mode], "measure", trial, model, mode, variant),
                                              variant, position))
    warmups = {
        (model, variant): tuple(
            Block("warmup", trial, model, mode,
                  _requests(config, _warmup_units(config, units[mode]), "warmup", trial, model, mode, variant), variant)
            for trial in range(config.trials.warmup)
            for mode in config.trials.modes
        )
        for model in names
        for variant in variants
    }
    return Plan(warmups=warmups, measured=tuple(measured), groups=tuple(groups), interleaved=interleaved)


def _warmup_units(config: ExperimentConfig, units: list[Prompt]) -> list[Prompt]:
    return units[: config.trials.warmup_prompts] if config.trials.warmup_prompts else units


def planned_generations(plan: Plan) -> list[dict[str, object]]:
    """The measured generations as plain data (plan.json in the run directory): what a complete run holds."""
    return [{"record_id": request.request_id, "model": block.model, "mode": block.mode, "trial": block.trial,
             "unit": request.prompt_id, "variant": block.variant, "position": block.position}
            for block in plan.measured for request in block.requests]


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
