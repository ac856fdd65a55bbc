"""Config validation: every mistake names the file, the field and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact.config import load_config, parse_overrides, shipped_configs
from artifact.errors import ConfigError

VALID = """
[experiment]
name = "t"

[generation]
prompts = "prompts.jsonl"
max_new_tokens = 8

[[models]]
name = "c"
role = "candidate"
builtin = "tiny-expanded"

[[models]]
name = "b"
role = "baseline"
repo = "org/model"
revision = "0123456789abcdef0123456789abcdef01234567"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


def test_shipped_configs_load() -> None:
    names = shipped_configs()
    assert {"smoke", "r2-swallow-7b"} <= set(names)
    for name in names:
        config = load_config(name)
        assert config.candidate.role == "candidate" and config.baselines


def test_r2_config_pins_commits_and_has_the_right_models() -> None:
    config = load_config("r2-swallow-7b")
    assert config.candidate.repo == "tokyotech-llm/Swallow-7b-hf"
    assert {model.repo for model in config.baselines} == {"tokyotech-llm/Swallow-7b-NVE-hf", "meta-llama/Llama-2-7b-hf"}
    assert all(len(model.revision or "") == 40 for model in config.models)
    assert config.generation.max_new_tokens == 256


def test_valid_config_resolves_relative_paths_against_its_folder(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, VALID)))
    assert config.generation.prompts == tmp_path / "prompts.jsonl"
    assert config.engine.vllm.gpu_memory_utilization == 0.9
    assert config.cost.price_per_gpu_hour_usd == 2.69


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (lambda t: t.replace('max_new_tokens = 8', 'max_new_tokens = "eight"'), "generation.max_new_tokens", "an integer"),
        (lambda t: t.replace('max_new_tokens = 8', 'max_new_tokens = 8\nmin_new_tokens = 4'), "generation.min_new_tokens", "must equal"),
        (lambda t: t.replace('max_new_tokens = 8', 'max_new_tokens = 8\nignore_eos = false'), "generation.ignore_eos", "must be true"),
        (lambda t: t.replace('role = "baseline"', 'role = "basline"'), "models[1].role", "did you mean 'baseline'"),
        (lambda t: t.replace('revision = "0123456789abcdef0123456789abcdef01234567"', 'revision = "main"'), "models[1].revision", "40-hex"),
        (lambda t: t + '\n[engine]\nname = "vlm"\n', "engine.name", "did you mean 'vllm'"),
        (lambda t: t + '\n[engine.vllm]\ngpu_memory_utilization = 1.5\n', "engine.vllm.gpu_memory_utilization", "fraction"),
        (lambda t: t + '\n[trials]\nmeasured = 0\n', "trials.measured", "> 0"),
        (lambda t: t + '\n[trials]\nmodes = ["latencY"]\n', "trials.modes", "latency"),
        (lambda t: t.replace('name = "t"', 'nme = "t"'), "name", "required"),
    ],
)
def test_broken_config_names_file_field_and_expectation(tmp_path: Path, edit, field: str, expected: str) -> None:
    path = write(tmp_path, edit(VALID))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert field in message
    assert expected in message


def test_unknown_field_is_reported_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("max_new_tokens = 8", "max_new_tokens = 8\nmax_new_token = 9"))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) in \[generation\]: 'max_new_token' \(did you mean 'max_new_tokens'\?\)"):
        load_config(str(path))


def test_model_roles_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('role = "baseline"', 'role = "candidate"'))
    with pytest.raises(ConfigError, match="exactly one model with role"):
        load_config(str(path))


def test_invalid_toml_and_unknown_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'smoke'"):
        load_config("smok")


def test_overrides_take_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    config = load_config(str(path), parse_overrides(["trials.measured=5", "engine.name=vllm", "generation.max_prompts=3"]))
    assert (config.trials.measured, config.engine.name, config.generation.max_prompts) == (5, "vllm", 3)
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        parse_overrides(["nonsense"])


def test_fingerprint_ignores_price_but_not_generation(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    base = load_config(str(path)).fingerprint()
    assert load_config(str(path), {"cost.price_per_gpu_hour_usd": "4.0"}).fingerprint() == base
    assert load_config(str(path), {"generation.max_new_tokens": "9", "generation.min_new_tokens": "9"}).fingerprint() != base
