"""The plan is pure and fair: stable ids, identical seeds across models, counterbalanced model order."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from artifact.config import load_config, parse_overrides
from artifact.corpora import Prompt
from artifact.errors import ConfigError
from artifact.plan import build_plan, count_loads, planned_generations, williams_orders
from conftest import TINY_MODELS

PROMPTS = [Prompt(id=f"p{index}", text=f"質問{index}") for index in range(6)]
DOCUMENTS = [Prompt(id=f"d{index}", text="前文", continuation=f"本文{index}です。") for index in range(6)]
THREE_MODELS = TINY_MODELS + """
[[models]]
name = "tiny-baseline-twin"
role = "control"
builtin = "tiny-baseline"
"""


def smoke_config(**overrides: str):
    """The smoke config's candidate and baseline (its A/A twin left out: the three-model tests write their own), in
    its free-generation modes (these tests build plans from prompts alone; fixed text needs its reference units)."""
    overrides = {"trials.modes": '["latency", "throughput"]', **overrides}
    loaded = load_config("smoke", parse_overrides([f"{key}={value}" for key, value in overrides.items()]))
    return replace(loaded, models=tuple(model for model in loaded.models if model.role != "control"),
                   analysis=replace(loaded.analysis, noise_floor=()))


def three_model_config(tmp_path, engine: str = "transformers", measured: int = 3, modes: str = '["latency"]'):
    path = tmp_path / "three.toml"
    path.write_text(f"""
[experiment]
name = "three"
smoke = true
[generation]
max_new_tokens = 8
[trials]
warmup = 0
measured = {measured}
modes = {modes}
[engine]
name = "{engine}"
{THREE_MODELS}
""")
    return load_config(str(path))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_williams_rows_balance_positions_and_carry_over(count: int) -> None:
    rows = williams_orders(count)
    assert len(rows) == (count if count % 2 == 0 else 2 * count)
    for position in range(count):  # every treatment in every position equally often
        assert Counter(row[position] for row in rows) == Counter({treatment: len(rows) // count for treatment in range(count)})
    follows = Counter((row[i], row[i + 1]) for row in rows for i in range(count - 1))
    if count > 1:  # every ordered pair of neighbours equally often
        assert len(follows) == count * (count - 1) and len(set(follows.values())) == 1


def test_three_models_interleaved_per_unit_are_balanced(tmp_path) -> None:
    """The old forward/reversed order left the middle model in the middle; the Williams rows rotate all of them."""
    config = three_model_config(tmp_path, measured=2)
    plan = build_plan(config, PROMPTS)  # 6 units per round = the 6 rows of the Williams design for 3 models
    assert plan.interleaved
    assert all(len(set(block.requests)) == 1 and block.unit == block.requests[0].prompt_id for block in plan.measured)
    assert plan.position_counts("latency") == {name: [4, 4, 4] for name in ("tiny-expanded", "tiny-baseline", "tiny-baseline-twin")}
    assert plan.balanced("latency")
    assert not build_plan(config, PROMPTS[:4]).balanced("latency")  # 4 units: `artifact plan` says so
    unit_orders = {group.order for group in plan.groups if group.unit == "p0"}
    assert len(unit_orders) == 2  # a unit changes order (and positions) from one round to the next
    # Units run one after the other; within a unit, every model once, in the group's order and position.
    first_unit = plan.measured[:3]
    assert {block.unit for block in first_unit} == {"p0"} and [block.position for block in first_unit] == [0, 1, 2]
    assert [block.model for block in first_unit] == list(plan.groups[0].order)


def test_one_resident_model_runs_blocks_per_round_balanced_over_three_rounds(tmp_path) -> None:
    config = three_model_config(tmp_path, engine="vllm", measured=3, modes='["latency", "throughput"]')
    plan = build_plan(config, PROMPTS)
    assert not plan.interleaved
    assert plan.position_counts("latency") == {name: [1, 1, 1] for name in ("tiny-expanded", "tiny-baseline", "tiny-baseline-twin")}
    # A model runs all its modes before the next one loads.
    sequence = [(block.trial, block.model) for block in plan.measured]
    assert sequence == [pair for pair in sequence[::2] for _ in range(2)]
    assert {len(block.requests) for block in plan.measured} == {len(PROMPTS)}
    unbalanced = build_plan(three_model_config(tmp_path, engine="vllm", measured=2), PROMPTS)
    assert not unbalanced.balanced("latency")  # 2 rounds cannot balance 3 positions: `artifact plan` says so


def test_two_models_alternate_like_abba_on_vllm() -> None:
    plan = build_plan(smoke_config(**{"trials.measured": "4", "engine.name": "vllm"}), PROMPTS)
    assert plan.model_order_by_trial == (
        ("tiny-expanded", "tiny-baseline"),
        ("tiny-baseline", "tiny-expanded"),
        ("tiny-expanded", "tiny-baseline"),
        ("tiny-baseline", "tiny-expanded"),
    )


def test_counts_ids_seeds_and_positions() -> None:
    config = smoke_config(**{"trials.measured": "3", "generation.max_prompts": "4"})
    plan = build_plan(config, PROMPTS)
    assert plan.measured_generations == 3 * 2 * 2 * 4  # trials x models x modes x prompts
    warmup_prompts = config.trials.warmup_prompts
    assert plan.warmup_generations_per_load == {("tiny-expanded", "default"): 1 * 2 * warmup_prompts,
                                                ("tiny-baseline", "default"): 1 * 2 * warmup_prompts}
    ids = [request.request_id for block in plan.measured for request in block.requests]
    assert len(ids) == len(set(ids))
    seeds = {}
    for block in plan.measured:
        for request in block.requests:
            seeds.setdefault((block.trial, request.prompt_id), set()).add(request.seed)
            assert request.max_new_tokens == config.generation.max_new_tokens
    assert all(len(values) == 1 for values in seeds.values())  # same seed for every model and mode
    assert len({next(iter(values)) for values in seeds.values()}) == len(seeds)  # different per trial/prompt
    planned = planned_generations(plan)
    assert len(planned) == plan.measured_generations and {row["position"] for row in planned} == {0, 1}
    assert plan.balanced("latency") and plan.balanced("throughput") is False  # 3 rounds, 2 models: 2 vs 1


def test_fixed_text_uses_the_reference_units_with_their_continuation() -> None:
    base = smoke_config(**{"generation.max_prompts": "2"})
    config = replace(base, trials=replace(base.trials, modes=("fixed_text", "latency")))
    plan = build_plan(config, PROMPTS, reference_units=DOCUMENTS)
    fixed = [request for block in plan.measured if block.mode == "fixed_text" for request in block.requests]
    assert len(fixed) == config.trials.measured * 2 * len(DOCUMENTS)
    assert {request.continuation for request in fixed} == {unit.continuation for unit in DOCUMENTS}
    latency = [request for block in plan.measured if block.mode == "latency" for request in block.requests]
    assert {request.prompt_id for request in latency} == {"p0", "p1"} and all(r.continuation is None for r in latency)
    with pytest.raises(ConfigError, match="reference texts"):
        build_plan(config, PROMPTS)


def test_plan_is_deterministic() -> None:
    config = smoke_config()
    assert build_plan(config, PROMPTS) == build_plan(config, PROMPTS)


def test_chunked_prefill_ablation_adds_a_variant_for_vllm_only() -> None:
    config = smoke_config(**{"engine.name": "vllm", "engine.vllm.ablate_chunked_prefill": "true", "trials.measured": "2"})
    plan = build_plan(config, PROMPTS)
    variants = [block.variant for block in plan.measured]
    assert variants.count("default") == variants.count("no-chunked-prefill") == 2 * 2 * 2
    assert variants.index("no-chunked-prefill") == variants.count("default")  # main trials first
    ids = [request.request_id for block in plan.measured for request in block.requests]
    assert len(ids) == len(set(ids))
    assert set(plan.warmups) == {(model, variant) for model in ("tiny-expanded", "tiny-baseline")
                                 for variant in ("default", "no-chunked-prefill")}
    from artifact.config import engine_variants

    settings = engine_variants(config.engine)
    assert settings["default"].vllm.enable_chunked_prefill is True
    assert settings["no-chunked-prefill"].vllm.enable_chunked_prefill is False
    transformers = smoke_config(**{"engine.vllm.ablate_chunked_prefill": "true"})
    assert {block.variant for block in build_plan(transformers, PROMPTS).measured} == {"default"}


def test_load_count_follows_the_resident_limit() -> None:
    from artifact.cost import estimate

    plan = build_plan(smoke_config(**{"trials.measured": "3"}), PROMPTS)
    assert count_loads(plan, None) == 2  # transformers: each model loads once, whatever the interleaving
    vllm = smoke_config(**{"trials.measured": "3", "engine.name": "vllm"})
    vllm_plan = build_plan(vllm, PROMPTS)
    # One resident model: A B | B A | A B -> loads A, B, (B stays), A, (A stays), B = 4.
    assert count_loads(vllm_plan, 1) == 4
    guess = estimate(vllm_plan, vllm)
    # loads x warm-up trials x modes x warmup_prompts
    assert guess["model_loads"] == 4 and guess["warmup_generations"] == 4 * 1 * 2 * vllm.trials.warmup_prompts
