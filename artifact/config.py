"""The experiment config: a frozen, validated description of what to run. Loading it has no side effects.

Precedence: `--set section.key=value` on the command line > the TOML file > the defaults below.
Relative paths in a config resolve against the config file's folder; `{dataset}` stands for the
project's `dataset/` folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from artifact.errors import ConfigError
from artifact.paths import dataset_dir
from artifact.toml_fields import Table, did_you_mean, read_toml
from artifact.tunings import TUNINGS

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
ROLES = ("candidate", "baseline", "control")  # control: measured (e.g. an A/A twin), never judged
ENGINES = ("transformers", "vllm", "auto")
MODES = ("latency", "throughput", "fixed_text")
WEIGHTS = ("real", "synthetic")
DTYPES = ("bfloat16", "float16", "float32", "auto")
WEIGHT_LAYOUTS = ("out-major", "in-major")  # [engine.transformers] weight_layout (engines/weight_layout.py)
DEVICES = ("auto", "cpu", "cuda")
_SHA = re.compile(r"^[0-9a-f]{40}$")
# experiment.name names the run directory: one path component, no separators, no "." or "..", and short enough
# (in UTF-8 bytes) that the timestamp and suffix added to it stay under the file systems' 255-byte limit.
_NAME = re.compile(r"^\w[\w.-]*$")
MAX_NAME_BYTES = 100


@dataclass(frozen=True)
class ModelSpec:
    """One model: exactly one of `repo` (Hub id at a pinned `revision`), `path` or `builtin` is set."""

    name: str
    role: str
    repo: str | None = None
    revision: str | None = None
    path: Path | None = None
    builtin: str | None = None
    weights: str = "real"
    architecture: str | None = None
    tokenizer: str | None = None

    @property
    def source_label(self) -> str:
        if self.repo:
            return f"{self.repo}@{self.revision}"
        if self.path:
            return str(self.path)
        return f"builtin:{self.builtin}"


@dataclass(frozen=True)
class GenerationSettings:
    prompts: Path
    max_new_tokens: int = 256
    max_prompts: int = 0
    temperature: float = 0.0


@dataclass(frozen=True)
class TrialSettings:
    warmup: int = 1
    measured: int = 3
    warmup_prompts: int = 0
    modes: tuple[str, ...] = ("latency",)


@dataclass(frozen=True)
class TransformersSettings:
    compile: bool = False
    tuning: str = "default"  # inductor settings of the compiled decode step (artifact/engines/compile_cache.py)
    # Static decode attention reads the written cache slots rounded up to this many (windowed_attention.py);
    # 0 reads the whole static cache at every step.
    attention_window: int = 64
    # q/k/v and gate/up projections as one matrix product each in the compiled static decode path
    # (packed_projections.py); on an H100 the step went from 72.2% to 77.7% of the roofline at batch 1 with the same
    # greedy tokens (docs/performance.md, issue 14 fifth session)
    pack_projections: bool = True
    # "in-major": the decoder layers' projection weights stored (inputs, outputs) (weight_layout.py), which makes
    # cuBLAS pick faster kernels; on an H100 the packed step went from 77.3% to 82.3% of the roofline at batch 1 with
    # the same greedy tokens (docs/performance.md, issue 14 seventh session). "out-major" keeps them as loaded
    weight_layout: str = "in-major"


@dataclass(frozen=True)
class VLLMSettings:
    gpu_memory_utilization: float = 0.9
    enable_chunked_prefill: bool = True
    tensor_parallel_size: int = 1
    max_model_len: int = 2048
    enforce_eager: bool = False
    allow_reduced_max_model_len: bool = True
    ablate_chunked_prefill: bool = False


@dataclass(frozen=True)
class EngineSettings:
    name: str = "transformers"
    dtype: str = "bfloat16"
    device: str = "auto"
    transformers: TransformersSettings = field(default_factory=TransformersSettings)
    vllm: VLLMSettings = field(default_factory=VLLMSettings)


@dataclass(frozen=True)
class CostSettings:
    price_per_gpu_hour_usd: float = 2.69
    gpu_count: int = 1
    expected_decode_tokens_per_second: float = 30.0
    expected_load_seconds: float = 60.0


@dataclass(frozen=True)
class AnalysisSettings:
    bootstrap_resamples: int = 10_000
    confidence: float = 0.95
    allow_confounded: bool = False
    # Completeness and noise (issue 10): below min_units paired units, or min_rounds rounds, the verdict is
    # INSUFFICIENT; noise_floor names two models of identical shape and tokenizer measured as an A/A pair, and
    # the run is NOISY when their ratio is further than noise_tolerance from 1.
    min_units: int = 5
    min_rounds: int = 2
    noise_floor: tuple[str, ...] = ()
    noise_tolerance: float = 0.02


@dataclass(frozen=True)
class TokenSettings:
    """The tokenizer-efficiency stage: corpora to count, the one the projection uses, English controls."""

    corpora: tuple[str, ...] = ("jsquad", "wagahai", "prompts", "botchan")
    reference: str = "jsquad"
    controls: tuple[str, ...] = ("botchan",)
    max_documents: int = 0


DEFAULT_REFERENCE_PROMPT = "次の文章を書いてください。"


@dataclass(frozen=True)
class ReferenceTextSettings:
    """Fixed-text timing's reference documents (`[reference_texts]`, built by artifact/reference_texts.py):
    `documents` documents of `corpus` chosen with `seed` (None = the experiment's seed), each cut at the
    sentence end nearest `target_chars` characters, within [`min_chars`, `max_chars`]; every model prefills
    `prompt` (P), then emits the cut text (T)."""

    corpus: str = "jsquad"
    documents: int = 20
    target_chars: int = 150
    min_chars: int = 80
    max_chars: int = 220
    prompt: str = DEFAULT_REFERENCE_PROMPT
    seed: int | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    claim: str
    seed: int
    smoke: bool
    description: str
    models: tuple[ModelSpec, ...]
    generation: GenerationSettings
    trials: TrialSettings
    engine: EngineSettings
    cost: CostSettings
    analysis: AnalysisSettings
    source: Path
    tokens: TokenSettings = field(default_factory=TokenSettings)
    reference_texts: ReferenceTextSettings | None = None  # None: no [reference_texts] section (no fixed_text mode)

    @property
    def candidate(self) -> ModelSpec:
        return next(model for model in self.models if model.role == "candidate")

    @property
    def baselines(self) -> tuple[ModelSpec, ...]:
        return tuple(model for model in self.models if model.role == "baseline")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def fingerprint(self) -> str:
        """Identifies what the records depend on; a resumed run must match it."""
        payload = self.to_dict()
        payload.pop("source", None)
        payload.pop("cost", None)
        payload.pop("analysis", None)
        if payload.get("reference_texts") is None:
            payload.pop("reference_texts", None)  # configs without the section keep their earlier fingerprint
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


ABLATION_NO_CHUNKED_PREFILL = "no-chunked-prefill"


def engine_variants(engine: EngineSettings) -> dict[str, EngineSettings]:
    """The engine settings each run variant uses: "default", plus the chunked-prefill ablation when asked for
    (it applies to vLLM; a run on transformers skips it and says so)."""
    variants = {"default": engine}
    if engine.vllm.ablate_chunked_prefill and engine.name in ("vllm", "auto"):
        variants[ABLATION_NO_CHUNKED_PREFILL] = replace(engine, vllm=replace(engine.vllm, enable_chunked_prefill=False))
    return variants


def shipped_configs() -> list[str]:
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.toml"))


def locate_config(name_or_path: str) -> Path:
    """A config is a path to a TOML file or the name of one shipped in artifact/configs/."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate.resolve()
    shipped = CONFIGS_DIR / f"{name_or_path.removesuffix('.toml')}.toml"
    if shipped.is_file():
        return shipped
    names = shipped_configs()
    raise ConfigError(
        f"config {name_or_path!r}: no such file, and no shipped config of that name"
        f"{did_you_mean(name_or_path, names)}. Shipped configs: {', '.join(names)}"
    )


def load_config(name_or_path: str, overrides: dict[str, str] | None = None) -> ExperimentConfig:
    path = locate_config(name_or_path)
    data = read_toml(path)
    overrides = dict(overrides or {})
    for dotted, raw in overrides.items():
        _apply_override(data, dotted, raw, path)
    if "generation.max_new_tokens" in overrides and "generation.min_new_tokens" not in overrides:
        # The length is forced (min = max): a new max carries the min with it, whatever the file said.
        generation = data.get("generation")
        if isinstance(generation, dict):
            generation.pop("min_new_tokens", None)
    return parse_config(data, path, overrides)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`--set trials.measured=1` pairs; the value is parsed as TOML (so `true`, `3`, `"x"` work)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE, e.g. --set trials.measured=1")
        result[key.strip()] = value.strip()
    return result


def _apply_override(data: dict[str, Any], dotted: str, raw: str, source: Path) -> None:
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is taken as a string
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"--set {dotted}={raw}: expected SECTION.KEY=VALUE, e.g. --set trials.measured=1")
    target = data
    for part in parts[:-1]:
        node = target.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}={raw}: '{part}' in {source} is not a table")
        target = node
    target[parts[-1]] = value


def _resolve_path(raw: str, base: Path) -> Path:
    expanded = raw.replace("{dataset}", str(dataset_dir()))
    path = Path(expanded).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def parse_config(data: dict[str, Any], source: Path, overrides: dict[str, str] | None = None) -> ExperimentConfig:
    top = Table(data, source, "", overrides)
    experiment = top.sub("experiment")
    config = ExperimentConfig(
        name=_parse_name(experiment),
        claim=_parse_claim(experiment),
        seed=_parse_seed(experiment),
        smoke=experiment.get("smoke", bool, False),
        description=experiment.get("description", str, ""),
        models=_parse_models(top, source),
        generation=_parse_generation(top.sub("generation"), source),
        trials=_parse_trials(top.sub("trials")),
        engine=_parse_engine(top.sub("engine")),
        cost=_parse_cost(top.sub("cost")),
        analysis=_parse_analysis(top.sub("analysis")),
        source=source,
        tokens=_parse_tokens(top.sub("tokens")),
        reference_texts=_parse_reference_texts(top, source),
    )
    if "fixed_text" in config.trials.modes and config.reference_texts is None:
        raise ConfigError(f"{source}: field 'trials.modes': \"fixed_text\" needs a [reference_texts] section "
                          "(which corpus, how many documents, the cut length and the prompt)")
    if "fixed_text" in config.trials.modes and config.engine.name != "transformers":
        raise ConfigError(
            f"{source}: field 'trials.modes': \"fixed_text\" runs on the transformers engine only (README, "
            f"\"Fixed-text timing\"), but engine.name = {config.engine.name!r}; set engine.name = \"transformers\", "
            "or leave fixed_text out of trials.modes (e.g. --set 'trials.modes=[\"latency\", \"throughput\"]')")
    for table in (experiment, top):
        table.check_no_unknown()
    unknown = [name for name in config.analysis.noise_floor if name not in {model.name for model in config.models}]
    if unknown:
        raise ConfigError(f"{source}: field 'analysis.noise_floor': {unknown} not among the [[models]] names "
                          f"{[model.name for model in config.models]}")
    return config


def _parse_name(table: Table) -> str:
    name = table.get("name", str, required=True)
    if not _NAME.match(name) or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise table.fail("name", f"{name!r} cannot name a run directory: expected 1 to {MAX_NAME_BYTES} bytes of "
                                 "letters, digits, '_', '.' and '-', starting with a letter, digit or '_' (no '/', "
                                 "no spaces, not '.' or '..')")
    return name


def _parse_seed(table: Table) -> int:
    seed = table.get("seed", int, 1234)
    if not 0 <= seed < 2**63:
        raise table.fail("seed", f"expected an integer in [0, 2**63), got {seed}")  # numpy refuses negative seeds
    return seed


def _parse_claim(table: Table) -> str:
    from artifact.claims import all_claims

    claim = table.get("claim", str, "R-2")
    known = list(all_claims())
    if claim not in known:
        raise table.fail("claim", f"unknown claim {claim!r}{did_you_mean(claim, known)}; registered claims: "
                                  f"{', '.join(known)}")
    return claim


def _parse_models(top: Table, source: Path) -> tuple[ModelSpec, ...]:
    top._read.add("models")
    raw_models = top.data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise top.fail("models", "expected one or more [[models]] tables (one candidate, at least one baseline)")
    models = tuple(_parse_model(Table(raw, source, f"models[{index}]", top.overrides), source)
                   for index, raw in enumerate(raw_models))
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: field 'models': duplicate model name(s) {duplicates}; names must be unique")
    roles = [model.role for model in models]
    if roles.count("candidate") != 1 or "baseline" not in roles:
        raise ConfigError(
            f"{source}: field 'models': expected exactly one model with role = \"candidate\" and at least one "
            f"with role = \"baseline\"; got roles {roles}"
        )
    return models


def _parse_model(table: Table, source: Path) -> ModelSpec:
    repo = table.get("repo", str)
    raw_path = table.get("path", str)
    builtin = table.get("builtin", str)
    given = [key for key, value in (("repo", repo), ("path", raw_path), ("builtin", builtin)) if value]
    if len(given) != 1:
        raise table.fail("repo", f"set exactly one of 'repo' (Hub id), 'path' (local folder) or 'builtin'; got {given or 'none'}")
    revision = table.get("revision", str)
    if repo and (revision is None or not _SHA.match(revision)):
        raise table.fail(
            "revision", f"a Hub model needs a pinned 40-hex commit SHA (not a branch like 'main'), got {revision!r}"
        )
    if builtin:
        from artifact.tiny import BUILTIN_MODELS

        if builtin not in BUILTIN_MODELS:
            raise table.fail("builtin", f"expected one of {sorted(BUILTIN_MODELS)}, got {builtin!r}{did_you_mean(builtin, sorted(BUILTIN_MODELS))}")
    spec = ModelSpec(
        name=table.get("name", str, required=True),
        role=table.choice("role", ROLES, required=True),
        repo=repo,
        revision=revision,
        path=_resolve_path(raw_path, source.parent) if raw_path else None,
        builtin=builtin,
        weights=table.choice("weights", WEIGHTS, "real"),
        architecture=table.get("architecture", str),
        tokenizer=_tokenizer_source(table, source.parent),
    )
    table.check_no_unknown()
    return spec


def _tokenizer_source(table: Table, base: Path) -> str | None:
    """A model's `tokenizer`: `standin:NAME` / `data:MANIFEST_ID` (artifact/standin.py) are checked here, by name."""
    from artifact.standin import is_named_source, named_source_problem

    raw = table.get("tokenizer", str)
    if is_named_source(raw):
        problem = named_source_problem(raw)
        if problem is not None:
            raise table.fail("tokenizer", problem)
        return raw
    return _optional_source(raw, base)


def _optional_source(raw: str | None, base: Path) -> str | None:
    """A tokenizer source: a Hub id stays as written; anything that looks like a path is resolved."""
    if raw is None or re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", raw) and not raw.startswith((".", "/", "{")):
        return raw
    return str(_resolve_path(raw, base))


def _parse_generation(table: Table, source: Path) -> GenerationSettings:
    max_new = table.positive_int("max_new_tokens", 256)
    min_new = table.positive_int("min_new_tokens", max_new)
    if min_new != max_new:
        raise table.fail("min_new_tokens", f"must equal max_new_tokens ({max_new}) so every model generates the same length; got {min_new}")
    if not table.get("ignore_eos", bool, True):
        raise table.fail("ignore_eos", "must be true: a model that stops at EOS would look fast by generating less")
    settings = GenerationSettings(
        prompts=_resolve_path(table.get("prompts", str, "{dataset}/prompts_swallow_bench.jsonl"), source.parent),
        max_new_tokens=max_new,
        max_prompts=table.positive_int("max_prompts", 0, allow_zero=True),
        temperature=table.get("temperature", float, 0.0),
    )
    if settings.temperature < 0:
        raise table.fail("temperature", f"expected >= 0, got {settings.temperature}")
    table.check_no_unknown()
    return settings


def _parse_trials(table: Table) -> TrialSettings:
    modes = table.get("modes", list, ["latency"])
    for mode in modes:
        if mode not in MODES:
            raise table.fail("modes", f"expected a list of {list(MODES)}, got {mode!r}{did_you_mean(str(mode), MODES)}")
    if not modes:
        raise table.fail("modes", f"expected at least one of {list(MODES)}")
    settings = TrialSettings(
        warmup=table.positive_int("warmup", 1, allow_zero=True, maximum=1_000),
        measured=table.positive_int("measured", 3, maximum=10_000),
        warmup_prompts=table.positive_int("warmup_prompts", 0, allow_zero=True),
        modes=tuple(dict.fromkeys(modes)),
    )
    table.check_no_unknown()
    return settings


def _attention_window(table: Table) -> int:
    window = table.positive_int("attention_window", 64, allow_zero=True, maximum=1 << 16)
    if window % 64:  # static caches grow in steps of 64 slots; a finer step only multiplies the captured graphs
        raise table.fail("attention_window", f"expected 0 (read the whole cache) or a multiple of 64, got {window}")
    return window


def _parse_engine(table: Table) -> EngineSettings:
    hf_table = table.sub("transformers")
    vllm_table = table.sub("vllm")
    settings = EngineSettings(
        name=table.choice("name", ENGINES, "transformers"),
        dtype=table.choice("dtype", DTYPES, "bfloat16"),
        device=table.choice("device", DEVICES, "auto"),
        transformers=TransformersSettings(compile=hf_table.get("compile", bool, False),
                                          tuning=hf_table.choice("tuning", tuple(TUNINGS), "default"),
                                          attention_window=_attention_window(hf_table),
                                          pack_projections=hf_table.get("pack_projections", bool, True),
                                          weight_layout=hf_table.choice("weight_layout", WEIGHT_LAYOUTS, "in-major")),
        vllm=VLLMSettings(
            gpu_memory_utilization=vllm_table.get("gpu_memory_utilization", float, 0.9),
            enable_chunked_prefill=vllm_table.get("enable_chunked_prefill", bool, True),
            tensor_parallel_size=vllm_table.positive_int("tensor_parallel_size", 1),
            max_model_len=vllm_table.positive_int("max_model_len", 2048),
            enforce_eager=vllm_table.get("enforce_eager", bool, False),
            allow_reduced_max_model_len=vllm_table.get("allow_reduced_max_model_len", bool, True),
            ablate_chunked_prefill=vllm_table.get("ablate_chunked_prefill", bool, False),
        ),
    )
    if not 0 < settings.vllm.gpu_memory_utilization <= 1:
        raise vllm_table.fail("gpu_memory_utilization", f"expected a fraction in (0, 1], got {settings.vllm.gpu_memory_utilization}")
    for sub in (hf_table, vllm_table, table):
        sub.check_no_unknown()
    return settings


def _parse_tokens(table: Table) -> TokenSettings:
    from artifact.corpora import corpus_ids

    known = corpus_ids()
    corpora = table.get("corpora", list, list(TokenSettings.corpora))
    controls = table.get("controls", list, list(TokenSettings.controls))
    for key, names in (("corpora", corpora), ("controls", controls)):
        for name in names:
            if name not in known:
                raise table.fail(key, f"unknown corpus {name!r}{did_you_mean(str(name), known)}; known: {', '.join(known)}")
    settings = TokenSettings(
        corpora=tuple(corpora),
        reference=table.get("reference", str, TokenSettings.reference),
        controls=tuple(name for name in controls if name in corpora),
        max_documents=table.positive_int("max_documents", 0, allow_zero=True),
    )
    if settings.reference not in settings.corpora:
        raise table.fail("reference", f"must be one of tokens.corpora {list(settings.corpora)}, got {settings.reference!r}")
    table.check_no_unknown()
    return settings


def _parse_reference_texts(top: Table, source: Path) -> ReferenceTextSettings | None:
    from artifact.corpora import corpus_ids

    if "reference_texts" not in top.data:
        top._read.add("reference_texts")
        return None
    table = top.sub("reference_texts")
    defaults = ReferenceTextSettings()
    known = corpus_ids()
    corpus = table.get("corpus", str, defaults.corpus)
    if corpus not in known:
        raise table.fail("corpus", f"unknown corpus {corpus!r}{did_you_mean(corpus, known)}; known: {', '.join(known)}")
    settings = ReferenceTextSettings(
        corpus=corpus,
        documents=table.positive_int("documents", defaults.documents),
        target_chars=table.positive_int("target_chars", defaults.target_chars),
        min_chars=table.positive_int("min_chars", defaults.min_chars),
        max_chars=table.positive_int("max_chars", defaults.max_chars),
        prompt=table.get("prompt", str, defaults.prompt),
        seed=table.get("seed", int, None),
    )
    if not settings.min_chars <= settings.target_chars <= settings.max_chars:
        raise table.fail("target_chars", f"expected min_chars <= target_chars <= max_chars, got "
                                         f"{settings.min_chars} <= {settings.target_chars} <= {settings.max_chars}")
    if not settings.prompt.strip():
        raise table.fail("prompt", "expected a non-empty prompt P (every model prefills it before the text)")
    table.check_no_unknown()
    return settings


def _parse_cost(table: Table) -> CostSettings:
    settings = CostSettings(
        price_per_gpu_hour_usd=table.get("price_per_gpu_hour_usd", float, 2.69),
        gpu_count=table.positive_int("gpu_count", 1),
        expected_decode_tokens_per_second=table.get("expected_decode_tokens_per_second", float, 30.0),
        expected_load_seconds=table.get("expected_load_seconds", float, 60.0),
    )
    if settings.price_per_gpu_hour_usd < 0:
        raise table.fail("price_per_gpu_hour_usd", f"expected >= 0, got {settings.price_per_gpu_hour_usd}")
    if settings.expected_decode_tokens_per_second <= 0:
        raise table.fail("expected_decode_tokens_per_second", "expected > 0")
    if settings.expected_load_seconds < 0:
        raise table.fail("expected_load_seconds", f"expected >= 0, got {settings.expected_load_seconds}")
    table.check_no_unknown()
    return settings


def _parse_analysis(table: Table) -> AnalysisSettings:
    settings = AnalysisSettings(
        bootstrap_resamples=table.positive_int("bootstrap_resamples", 10_000),
        confidence=table.get("confidence", float, 0.95),
        allow_confounded=table.get("allow_confounded", bool, False),
        min_units=table.positive_int("min_units", 5),
        min_rounds=table.positive_int("min_rounds", 2),
        noise_floor=tuple(table.get("noise_floor", list, [])),
        noise_tolerance=table.get("noise_tolerance", float, 0.02),
    )
    if not 0.5 <= settings.confidence < 1:
        raise table.fail("confidence", f"expected a level in [0.5, 1), got {settings.confidence}")
    if settings.noise_floor and (len(settings.noise_floor) != 2 or len(set(settings.noise_floor)) != 2):
        raise table.fail("noise_floor", f"expected two different model names (an A/A pair), got {list(settings.noise_floor)}")
    if not 0 < settings.noise_tolerance < 1:
        raise table.fail("noise_tolerance", f"expected a fraction in (0, 1), got {settings.noise_tolerance}")
    table.check_no_unknown()
    return settings


def config_from_resolved(data: dict[str, Any]) -> ExperimentConfig:
    """Rebuild the config from the resolved copy (`to_dict`) stored in a run directory, for `artifact report`."""
    engine = data["engine"]
    return ExperimentConfig(
        name=data["name"],
        claim=data["claim"],
        seed=data["seed"],
        smoke=data["smoke"],
        description=data["description"],
        models=tuple(
            ModelSpec(**{**model, "path": Path(model["path"]) if model.get("path") else None}) for model in data["models"]
        ),
        generation=GenerationSettings(**{**data["generation"], "prompts": Path(data["generation"]["prompts"])}),
        trials=TrialSettings(**{**data["trials"], "modes": tuple(data["trials"]["modes"])}),
        engine=EngineSettings(
            name=engine["name"],
            dtype=engine["dtype"],
            device=engine["device"],
            transformers=TransformersSettings(**engine["transformers"]),
            vllm=VLLMSettings(**engine["vllm"]),
        ),
        cost=CostSettings(**data["cost"]),
        analysis=AnalysisSettings(**{key: tuple(value) if isinstance(value, list) else value
                                     for key, value in data["analysis"].items()}),
        source=Path(data["source"]),
        tokens=TokenSettings(**{key: tuple(value) if isinstance(value, list) else value
                                for key, value in data.get("tokens", {}).items()}),
        reference_texts=ReferenceTextSettings(**data["reference_texts"]) if data.get("reference_texts") else None,
    )
