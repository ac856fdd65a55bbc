"""The `artifact` command line: parse, call, print. No logic lives here."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from artifact.errors import ArtifactError

app = typer.Typer(
    help="Reproduce claim R-2 (Swallow's vocabulary expansion and Japanese generation speed): plan, run, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables are wide; when the output is not a terminal (a log, CI), do not squeeze them into 80 columns.
# markup=False: paths, model names and error messages are user text, printed as written (a "[/x]" in a path is
# not a Rich tag); styles are given as style arguments.
console = Console(width=None if sys.stdout.isatty() else 160, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)
F = TypeVar("F", bound=Callable[..., Any])

ConfigArgument = Annotated[str, typer.Argument(help="Experiment config: a TOML path or a shipped name (smoke, r2-swallow-7b, ...).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: SECTION.KEY=VALUE (repeatable).")]
OutputOption = Annotated[Path, typer.Option("--output", "-o", help="Folder that receives the run directory.")]
MirrorOption = Annotated[Path | None, typer.Option(
    "--data-mirror", envvar="R2_DATA_MIRROR",
    help="Read the manifest's data files from this folder (laid out like the manifest's filenames) instead of "
         "downloading them; sha256 is still checked.")]
AllowConfoundedOption = Annotated[bool, typer.Option(
    "--allow-confounded", help="Judge confounded comparisons anyway; the report then states that the override was given.")]


# OS errors a user's choice of paths or disk causes: one line and exit 2, like any other user mistake. Other OS
# errors (a bug, a broken device) keep their traceback.
USER_OS_ERRORS = {
    errno.ENAMETOOLONG: "a file name is too long; use a shorter --output path or experiment.name",
    errno.EACCES: "permission denied; choose a folder you can write to (--output) or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.ENOSPC: "no space left on the device; free some space or choose another --output",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another --output",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder, not a file",
}


def print_error(message: str) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), message), highlight=False)


def user_errors(function: F) -> F:
    """A user mistake prints its message and exits 2; no traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ArtifactError as error:
            print_error(str(error))
            raise typer.Exit(2) from None
        except OSError as error:
            if error.errno not in USER_OS_ERRORS:
                raise
            where = f"{error.filename}: " if error.filename else ""
            print_error(f"{where}{error.strerror or USER_OS_ERRORS[error.errno]} ({USER_OS_ERRORS[error.errno]})")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class RichProgress:
    """Progress of measured generations on the terminal."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=err_console, transient=False)
        self.task: Any = None

    def start(self, total: int, description: str) -> None:
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def advance(self, label: str, count: int) -> None:
        self.bar.update(self.task, advance=count, description=label)

    def note(self, message: str) -> None:
        err_console.print(Text.assemble(("note: ", "yellow"), message), highlight=False)

    def stop(self) -> None:
        self.bar.stop()


def _overrides(overrides: list[str] | None, *, allow_confounded: bool = False) -> dict[str, str]:
    from artifact.config import parse_overrides

    pairs = list(overrides or [])
    if allow_confounded:
        pairs.append("analysis.allow_confounded=true")
    return parse_overrides(pairs)


def _load(config: str, overrides: list[str] | None, *, allow_confounded: bool = False) -> Any:
    from artifact.config import load_config

    return load_config(config, _overrides(overrides, allow_confounded=allow_confounded))


def _check_mirror(mirror: Path | None) -> None:
    if mirror is not None and not mirror.is_dir():
        raise ArtifactError(f"--data-mirror {mirror}: no such folder")


def print_verdicts(results: dict[str, Any]) -> None:
    from artifact.report import fmt_interval, fmt_number, verdict_rows

    claim = results["claim"]
    table = Table(title=f"Claim {claim['id']}: verdict metric = {claim['verdict_metric']['label']}, threshold {claim['threshold']}")
    for column in ("baseline", "verdict", "ratio [CI]", "units x rounds", "basis", f"paper's {claim['paper_value']:g}",
                   "tokens/s ratio (informational)"):
        table.add_column(column)
    for row in verdict_rows(results):
        table.add_row(row["baseline"], row["display"], row["ratio"], row["n"], row["basis"], row["paper_inside"],
                      row["tokens_ratio"])
    console.print(table)
    for comparison in results["comparisons"]:
        verdict = comparison["verdict"]
        if verdict.get("reason"):
            console.print(f"{comparison['baseline']}: {verdict['outcome']} -- {verdict['reason']}", highlight=False)
        if verdict.get("estimator") and comparison is results["comparisons"][0]:
            console.print(f"estimator: {verdict['estimator']}", highlight=False)
        if verdict.get("power"):
            console.print(f"{comparison['baseline']}: {verdict['power']['advice']}", highlight=False)
    summary = results["summary"]
    if "combined_display" in summary:
        console.print(f"Combined verdict: {summary['combined_display']} (binding baseline: {summary['baseline']}, "
                      f"ratio {fmt_number(summary['speedup_ratio'])})", style="bold", highlight=False)
        console.print(summary["combined_rule"], highlight=False)
    noise = results.get("noise_floor")
    if noise:
        state = "n/a" if noise["noisy"] is None else ("NOISY" if noise["noisy"] else "quiet")
        console.print(f"noise floor (A/A, {noise['pair'][1]} vs {noise['pair'][0]}, {noise['mode']}): "
                      f"{fmt_interval(noise['ratio'])}, tolerance {noise['tolerance']:.1%}: {state}",
                      style="bold red" if noise["noisy"] else None, highlight=False)
    elif "noise_floor" in results:
        console.print("noise floor: no A/A pair configured (analysis.noise_floor)", highlight=False)
    done = results.get("completeness")
    if done and done["status"] != "complete":
        console.print(f"completeness: {done['status']} -- {done['measured']} of {done['planned']} planned "
                      "generations measured; missing: " + "; ".join(f"{row['model']} {row['mode']}: {row['count']}"
                                                                   for row in done["missing"]), style="bold yellow",
                      highlight=False)
    if results["run"]["smoke"]:
        console.print("Smoke run: checks the pipeline on the tiny model pair; not evidence about Swallow.", style="bold yellow")


def _print_pilot(pilot: Path) -> None:
    """Sample-size advice from a previous run's own spread (its results.json)."""
    from artifact.analysis.power import sample_size
    from artifact.analysis.verdicts import unit_label

    path = pilot / "results.json"
    if not path.is_file():
        raise ArtifactError(f"--pilot {pilot}: no results.json there (give a run directory written by `artifact run`)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"--pilot {path}: not valid JSON ({error})") from None
    for comparison in results.get("comparisons", []):
        verdict = comparison["verdict"]
        ratio = verdict.get("ratio")
        advice = None if not ratio else sample_size(ratio, verdict["threshold"], unit_label=unit_label(verdict.get("mode", "")))
        if advice is None:
            console.print(f"pilot {comparison['baseline']}: no variance components in this run (older results); "
                          "re-render it with `artifact report`", highlight=False)
            continue
        options = ", ".join(f"{option['rounds']} rounds: {option['units'] or 'not reachable'}" for option in advice["options"])
        console.print(f"pilot vs {comparison['baseline']}: {advice['advice']} Units needed by rounds -- {options}.",
                      highlight=False)


def _print_design(the_plan: Any, modes: tuple[str, ...]) -> None:
    """How the models are ordered, and whether every model sits in every position equally often."""
    if the_plan.interleaved:
        console.print("order: every model stays loaded, so in latency/fixed-text mode the models alternate unit by unit "
                      "within each round (Williams design: each model in each position equally often)")
    else:
        console.print("order: one model loaded at a time, so each round runs one block per model (Williams design over rounds)")
    for trial, order in enumerate(the_plan.model_order_by_trial):
        console.print(f"trial {trial}: {' -> '.join(order)}{' (first unit)' if the_plan.interleaved else ''}")
    for mode in modes:
        counts = the_plan.position_counts(mode)
        listed = "; ".join(f"{model} {'/'.join(map(str, row))}" for model, row in counts.items())
        state = "balanced" if the_plan.balanced(mode) else (
            "NOT balanced: make the number of units (interleaved) or rounds (blocks) a multiple of the design's "
            "rows (2 models: 2; 3 models: 6)")
        console.print(f"positions in {mode} mode (times at position 0/1/...): {listed} -> {state}")


def _print_report_files(run_dir: Path) -> None:
    from artifact.report import pdf_status

    console.print(f"report: {run_dir / 'report.md'}")
    missing_pdf = pdf_status(run_dir)
    if missing_pdf:
        err_console.print(f"note: {missing_pdf}", style="yellow", highlight=False)
    else:
        console.print(f"report (PDF): {run_dir / 'report.pdf'}")


@app.command()
@user_errors
def plan(config: ConfigArgument, set_: SetOption = None, as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
         pilot: Annotated[Path | None, typer.Option("--pilot", help="A previous run directory: from its measured spread, how many units and rounds would make the verdict decisive.")] = None,
         data_mirror: MirrorOption = None) -> None:
    """Show what a run would do: models, generations, model order per trial, estimated GPU time and cost."""
    from artifact.cost import estimate
    from artifact.pipeline import load_plan

    _check_mirror(data_mirror)
    experiment = _load(config, set_)
    the_plan = load_plan(experiment, data_mirror)
    guess = estimate(the_plan, experiment)
    if as_json:
        console.print_json(json.dumps({"config": experiment.name, "estimate": guess,
                                       "model_order_by_trial": the_plan.model_order_by_trial,
                                       "measured_request_ids": [r.request_id for b in the_plan.measured for r in b.requests]}))
        return
    table = Table(title=f"Plan for {experiment.name} (claim {experiment.claim})")
    for column in ("model", "role", "source", "weights"):
        table.add_column(column)
    for model in experiment.models:
        table.add_row(model.name, model.role, model.source_label, model.weights)
    console.print(table)
    console.print(f"engine: {experiment.engine.name} · modes: {', '.join(experiment.trials.modes)} · "
                  f"{experiment.generation.max_new_tokens} forced new tokens per generation")
    _print_design(the_plan, experiment.trials.modes)
    console.print(f"generations: {guess['measured_generations']} measured + {guess['warmup_generations']} warm-up "
                  f"({guess['generated_tokens']} tokens), {guess['model_loads']} model loads")
    money = (f"{guess['arithmetic']}" if guess["accelerator"] else
             f"a CPU run (engine.device = {experiment.engine.device}): 0 GPU-hours, 0 USD")
    console.print(f"estimate: {guess['seconds'] / 60:.1f} min; {money} "
                  f"(assumes {experiment.cost.expected_decode_tokens_per_second:g} tokens/s decode and "
                  f"{experiment.cost.expected_load_seconds:g} s per model load)")
    if pilot is not None:
        _print_pilot(pilot)


@app.command()
@user_errors
def run(
    config: ConfigArgument,
    set_: SetOption = None,
    output: OutputOption = Path("runs"),
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory (same config).")] = None,
    data_mirror: MirrorOption = None,
    allow_confounded: AllowConfoundedOption = False,
) -> None:
    """Run the experiment: plan, tokenizer efficiency, timed trials, analysis and reports, into a new run directory."""
    _run(_load(config, set_, allow_confounded=allow_confounded), output, resume, data_mirror,
         _overrides(set_, allow_confounded=allow_confounded))


def _run(experiment: Any, output: Path, resume: Path | None, data_mirror: Path | None,
         overrides: dict[str, str]) -> dict[str, Any]:
    from artifact.pipeline import run_experiment

    _check_mirror(data_mirror)
    progress = RichProgress()
    try:
        outcome = run_experiment(experiment, output_root=output, resume=resume, progress=progress, data_mirror=data_mirror,
                                 overrides=overrides)
    finally:
        progress.stop()
    print_verdicts(outcome.results)
    _print_report_files(outcome.run.path)
    console.print(f"run directory: {outcome.run.path}")
    return outcome.results


def _parse_tokenizers(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, source = pair.partition("=")
        if not sep or not name or not source:
            raise ArtifactError(f"--tokenizer {pair!r}: expected NAME=SOURCE (a tokenizer.model, a folder, or a Hub id)")
        parsed[name] = source
    return parsed


def _token_tables(summary: dict[str, Any]) -> None:
    from artifact.report import fmt_interval

    table = Table(title="Tokenizer efficiency; characters = Unicode code points of the raw text, no BOS/EOS counted")
    for column in ("corpus", "role", "docs", "chars", "tokenizer", "tokens", "tokens/1000 chars", "tokens/1000 bytes", "chars/token"):
        table.add_column(column)
    for corpus in summary["corpora"]:
        for model, values in corpus["models"].items():
            table.add_row(corpus["corpus"], corpus["role"], str(corpus["documents"]), str(corpus["chars"]), model,
                          str(values["tokens"]), f"{values['tokens_per_1000_chars']:.1f}",
                          f"{values['tokens_per_1000_bytes']:.1f}", f"{values['chars_per_token']:.3f}")
    console.print(table)
    if not any(corpus["token_length_ratio"] for corpus in summary["corpora"]):
        return
    ratios = Table(title=f"Token length, {summary['candidate']} / baseline, paired over documents (published: {summary['reference_value']})")
    for column in ("corpus", "baseline", "ratio [95% CI]", "published value inside the CI"):
        ratios.add_column(column)
    for corpus in summary["corpora"]:
        for baseline, interval in corpus["token_length_ratio"].items():
            ratios.add_row(corpus["corpus"], baseline, fmt_interval(interval), str(interval["contains_reference"]))
    console.print(ratios)


@app.command()
@user_errors
def tokens(
    config: Annotated[str | None, typer.Argument(help="Experiment config whose models' tokenizers to compare (optional with --tokenizer).")] = None,
    set_: SetOption = None,
    tokenizer: Annotated[list[str] | None, typer.Option("--tokenizer", help="NAME=SOURCE: with a config, replace that model's tokenizer; without one, the tokenizers to compare (the first is the candidate).")] = None,
    corpus: Annotated[list[str] | None, typer.Option("--corpus", help="Corpus id (without a config; default: jsquad, wagahai, prompts, botchan).")] = None,
    data_mirror: MirrorOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the summary and per-document counts as JSON here.")] = None,
) -> None:
    """Tokenizer efficiency, CPU only: tokens per 1,000 characters and bytes, and the token-length ratio vs 0.562."""
    from artifact.claims import get_claim
    from artifact.config import TokenSettings
    from artifact.corpora import corpus_ids
    from artifact.measure.tokens import measure_config_tokens, measure_named_tokenizers
    from artifact.store import write_json

    _check_mirror(data_mirror)
    overrides = _parse_tokenizers(tokenizer or [])
    if config is not None:
        experiment = _load(config, set_)
        measured = measure_config_tokens(experiment, get_claim(experiment.claim), mirror=data_mirror, tokenizer_overrides=overrides)
    else:
        if not overrides:
            raise ArtifactError("give a CONFIG, or one or more --tokenizer NAME=SOURCE to compare")
        corpora = tuple(corpus or TokenSettings.corpora)
        for name in corpora:
            if name not in corpus_ids():
                raise ArtifactError(f"--corpus {name!r}: unknown; known corpora: {', '.join(corpus_ids())}")
        measured = measure_named_tokenizers(overrides, corpora, get_claim("R-2"), seed=0, mirror=data_mirror)
    _token_tables(measured["summary"])
    if output is not None:
        write_json(output, measured)
        console.print(f"written: {output}")


@app.command()
@user_errors
def fetch(data_mirror: MirrorOption = None) -> None:
    """Download (or read from --data-mirror) every file of dataset/manifest.toml and verify its sha256."""
    from artifact.data import fetch_all

    _check_mirror(data_mirror)
    for fetched in fetch_all(mirror=data_mirror):
        console.print(f"{fetched.id}: {fetched.path} ({fetched.source}, {fetched.size_bytes} bytes, sha256 ok)")


@app.command()
@user_errors
def validate(
    claim: Annotated[str | None, typer.Argument(help="Claim id, e.g. R-2.")] = None,
    all_claims: Annotated[bool, typer.Option("--all", help="Validate every registered claim.")] = False,
    config: Annotated[str | None, typer.Option(help="Run this config instead of the claim's own experiment.")] = None,
    set_: SetOption = None,
    output: OutputOption = Path("runs"),
    data_mirror: MirrorOption = None,
    allow_confounded: AllowConfoundedOption = False,
) -> None:
    """Run the experiment a claim needs and print its verdict (claims live in artifact/claims/*.toml)."""
    from artifact.claims import all_claims as registered, get_claim

    if all_claims == (claim is not None):
        raise ArtifactError(f"give a claim id or --all (registered claims: {', '.join(registered())})")
    chosen = list(registered().values()) if all_claims else [get_claim(claim or "")]
    for item in chosen:
        console.rule(f"claim {item.id}: {item.title}")
        experiment = _load(config or item.experiment, set_, allow_confounded=allow_confounded)
        if experiment.claim != item.id:
            raise ArtifactError(f"config {experiment.name!r} tests claim {experiment.claim}, not {item.id}")
        _run(experiment, output, None, data_mirror, _overrides(set_, allow_confounded=allow_confounded))


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory written by `artifact run`.")]) -> None:
    """Re-render results.json and the reports from a run directory's records, without running anything."""
    from artifact.pipeline import rerender

    results = rerender(run_dir)
    print_verdicts(results)
    _print_report_files(run_dir)


def main() -> None:
    # Our own progress bar tracks the run; the libraries' per-file bars would bury it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    app()


if __name__ == "__main__":
    main()
