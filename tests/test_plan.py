"""The plan is pure and fair: stable ids, identical seeds across models, alternating model order."""

from __future__ import annotations

from artifact.config import load_config, parse_overrides
from artifact.corpora import Prompt
from artifact.plan import build_plan

PROMPTS = [Prompt(id=f"p{index}", text=f"質問{index}") for index in range(5)]


def smoke_config(**overrides: str):
    return load_config("smoke", parse_overrides([f"{key}={value}" for key, value in overrides.items()]))


def test_model_order_alternates_between_trials() -> None:
    plan = build_plan(smoke_config(**{"trials.measured": "4"}), PROMPTS)
    assert plan.model_order_by_trial == (
        ("tiny-expanded", "tiny-baseline"),
        ("tiny-baseline", "tiny-expanded"),
        ("tiny-expanded", "tiny-baseline"),
        ("tiny-baseline", "tiny-expanded"),
    )
    assert [block.model for block in plan.measured if block.mode == "latency"] == [
        model for order in plan.model_order_by_trial for model in order
    ]


def test_counts_ids_and_seeds() -> None:
    config = smoke_config(**{"trials.measured": "3", "generation.max_prompts": "4"})
    plan = build_plan(config, PROMPTS)
    assert plan.measured_generations == 3 * 2 * 2 * 4  # trials x models x modes x prompts
    assert plan.warmup_generations_per_load == {("tiny-expanded", "default"): 1 * 2 * 4, ("tiny-baseline", "default"): 1 * 2 * 4}
    ids = [request.request_id for block in plan.measured for request in block.requests]
    assert len(ids) == len(set(ids))
    seeds = {}
    for block in plan.measured:
        for request in block.requests:
            seeds.setdefault((block.trial, request.prompt_id), set()).add(request.seed)
            assert request.max_new_tokens == config.generation.max_new_tokens
    assert all(len(values) == 1 for values in seeds.values())  # same seed for every model and mode
    assert len({next(iter(values)) for values in seeds.values()}) == len(seeds)  # different per trial/prompt


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
    from artifact.plan import count_loads

    plan = build_plan(smoke_config(**{"trials.measured": "3"}), PROMPTS)
    assert count_loads(plan, None) == 2  # transformers: each model loads once
    assert count_loads(plan, 2) == 2
    # One resident model: A B | B A | A B -> loads A, B, (B stays), A, (A stays), B = 4.
    assert count_loads(plan, 1) == 4
    vllm = smoke_config(**{"trials.measured": "3", "engine.name": "vllm"})
    guess = estimate(build_plan(vllm, PROMPTS), vllm)
    assert guess["model_loads"] == 4 and guess["warmup_generations"] == 4 * 1 * 2 * 4
