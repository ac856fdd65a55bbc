"""Property-based fuzzing of the user-facing loaders: whatever a prompts file or a config (and its --set
overrides) holds, the answer is a result or a one-line user error (exit 2), never a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from artifact.cli import app
from artifact.corpora import Prompt, load_prompts
from artifact.errors import ArtifactError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
runner = CliRunner()
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
weird = st.sampled_from(["\u2028", "\u2029", "\x85", "\r", "\r\n", "\ufeff", "\x00", "[/x]", "[bold]", "{dataset}",
                         "../", "/", "\\", "\"", "'", "日本語", "𠮷"])
scalar = st.one_of(st.booleans(), st.integers(min_value=-3, max_value=40),
                   st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(), text, weird,
                   st.sampled_from(["latency", "throughput", "fixed_text", "vllm", "auto", "transformers", "bfloat16",
                                    "cpu", "R-2", "candidate", "baseline", "tiny-expanded", "tiny-baseline", "prompts",
                                    "jsquad", "synthetic", "real", "smoke-fuzz"]))
value = st.one_of(scalar, st.lists(scalar, max_size=4))


# --- prompts files -------------------------------------------------------------------------------------------------

json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text, weird),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=8)
record = st.fixed_dictionaries({}, optional={"id": st.one_of(text, weird, json_value),
                                             "prompt": st.one_of(text, weird, json_value),
                                             "task": st.one_of(text, json_value)})
line = st.one_of(record.map(lambda r: json.dumps(r, ensure_ascii=False)), json_value.map(json.dumps), text, weird)
prompts_text = st.lists(line, max_size=6).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\u2028"]).map(lambda sep: sep.join(lines)))


def check_prompts(path: Path) -> None:
    try:
        prompts = load_prompts(path)
    except ArtifactError as error:
        assert str(error) and "\n" not in str(error).strip()
        return
    assert prompts and all(isinstance(p, Prompt) and p.id.strip() and p.text.strip() for p in prompts)
    assert len({p.id for p in prompts}) == len(prompts)


@FUZZ
@given(content=prompts_text)
def test_fuzzed_prompts_text_loads_or_is_a_user_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(content, encoding="utf-8")
    check_prompts(path)


@FUZZ
@given(content=st.binary(max_size=200))
def test_fuzzed_prompts_bytes_load_or_are_a_user_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(content)
    check_prompts(path)


def test_a_raw_line_separator_inside_a_json_string_is_text() -> None:
    """JSON allows U+2028 unescaped in a string; a line of the file is one record whatever it holds."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prompts.jsonl"
        path.write_text('{"id": "a", "prompt": "一行目\u2028二行目"}\n{"id": "b", "prompt": "x\x85y"}\n', encoding="utf-8")
        assert [p.text for p in load_prompts(path)] == ["一行目\u2028二行目", "x\x85y"]


# --- configs and --set ---------------------------------------------------------------------------------------------

SCHEMA = {
    "experiment": ["name", "claim", "seed", "smoke", "description"],
    "generation": ["prompts", "max_new_tokens", "min_new_tokens", "ignore_eos", "max_prompts", "temperature"],
    "trials": ["warmup", "measured", "warmup_prompts", "modes"],
    "engine": ["name", "dtype", "device"],
    "cost": ["price_per_gpu_hour_usd", "gpu_count", "expected_decode_tokens_per_second", "expected_load_seconds"],
    "analysis": ["bootstrap_resamples", "confidence", "allow_confounded"],
    "tokens": ["corpora", "reference", "controls", "max_documents"],
}
MODEL_KEYS = ["name", "role", "builtin", "path", "repo", "revision", "weights", "architecture", "tokenizer"]
BASE = {
    "experiment": {"name": "fuzz", "smoke": True},
    "generation": {"max_new_tokens": 4, "max_prompts": 2},
    "trials": {"warmup": 0, "measured": 1},
    "tokens": {"corpora": ["prompts"], "reference": "prompts", "controls": []},
}
BASE_MODELS = [{"name": "tiny-expanded", "role": "candidate", "builtin": "tiny-expanded"},
               {"name": "tiny-baseline", "role": "baseline", "builtin": "tiny-baseline"}]


def toml_value(item: object) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        return "nan" if math.isnan(item) else ("inf" if item > 0 else "-inf") if math.isinf(item) else repr(item)
    if isinstance(item, list):
        return "[" + ", ".join(toml_value(element) for element in item) + "]"
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=False).replace("\x7f", "\\u007f")
    return str(item)


def toml_text(sections: dict[str, dict[str, object]], models: list[dict[str, object]]) -> str:
    lines = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{json.dumps(key, ensure_ascii=False)} = {toml_value(item)}" for key, item in table.items()]
    for model in models:
        lines.append("[[models]]")
        lines += [f"{json.dumps(key, ensure_ascii=False)} = {toml_value(item)}" for key, item in model.items()]
    return "\n".join(lines) + "\n"


mutation = st.one_of(
    st.tuples(st.sampled_from(sorted(SCHEMA)), st.none(), value).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.sampled_from(SCHEMA[t[0]]), st.just(t[2]))),
    st.tuples(st.sampled_from(sorted(SCHEMA)), text, value),
)
model_mutation = st.tuples(st.integers(0, 2), st.sampled_from(MODEL_KEYS) | text, value)


def run_plan(config: Path, overrides: list[str]) -> None:
    arguments = ["plan", str(config)]
    for override in overrides:
        arguments += ["--set", override]
    result = runner.invoke(app, arguments)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output


@FUZZ
@given(mutations=st.lists(mutation, max_size=4), model_mutations=st.lists(model_mutation, max_size=3),
       drop_models=st.booleans())
def test_fuzzed_configs_plan_or_give_a_one_line_error(tmp_path: Path, mutations, model_mutations, drop_models) -> None:
    sections = {name: dict(table) for name, table in BASE.items()}
    for section, key, item in mutations:
        sections.setdefault(section, {})[key] = item
    models = [] if drop_models else [dict(model) for model in BASE_MODELS]
    for index, key, item in model_mutations:
        if index < len(models):
            models[index][key] = item
    path = tmp_path / "fuzz.toml"
    path.write_text(toml_text(sections, models), encoding="utf-8")
    run_plan(path, [])


@FUZZ
@given(raw=st.one_of(text, st.binary(max_size=120).map(lambda b: b.decode("latin-1"))))
def test_fuzzed_toml_text_gives_a_one_line_error(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "raw.toml"
    path.write_text(raw, encoding="utf-8")
    run_plan(path, [])


@FUZZ
@given(overrides=st.lists(st.one_of(
    st.tuples(st.sampled_from(sorted(SCHEMA)), text, value).map(lambda t: f"{t[0]}.{t[1]}={toml_value(t[2])}"),
    st.tuples(st.sampled_from(sorted(SCHEMA)), st.none(), value).flatmap(
        lambda t: st.sampled_from(SCHEMA[t[0]]).map(lambda key: f"{t[0]}.{key}={toml_value(t[2])}")),
    text, weird), max_size=3))
def test_fuzzed_set_overrides_give_a_one_line_error(tmp_path: Path, overrides: list[str]) -> None:
    path = tmp_path / "base.toml"
    path.write_text(toml_text(BASE, BASE_MODELS), encoding="utf-8")
    run_plan(path, overrides)
