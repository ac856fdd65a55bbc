"""The `artifact` command line: parse, call, print. No logic lives here."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from artifact.errors import ArtifactError

app = typer.Typer(
    help="Reproduce claim R-2 (Swallow's vocabulary expansion and Japanese generation speed): plan, run, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigArgument = Annotated[str, typer.Argument(help="Experiment config: a TOML path or a shipped name (smoke, r2-swallow-7b, ...).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: SECTION.KEY=VALUE (repeatable).")]
OutputOption = Annotated[Path, typer.Option("--output", "-o", help="Folder that receives the run directory.")]


def user_errors(function: F) -> F:
    """A user mistake prints its message and exits 2; no traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ArtifactError as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class RichProgress:
    """Progress of measured generations on the terminal."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=err_console, transient=False)
        self.task: Any = None

    def start(self, total: int, description: str) -> None:
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def advance(self, label: str, count: int) -> None:
        self.bar.update(self.task, advance=count, description=label)

    def note(self, message: str) -> None:
        err_console.print(f"[yellow]note:[/] {message}", highlight=False)

    def stop(self) -> None:
        self.bar.stop()


def _load(config: str, overrides: list[str] | None) -> Any:
    from artifact.config import load_config, parse_overrides

    return load_config(config, parse_overrides(overrides or []))


def print_verdicts(results: dict[str, Any]) -> None:
    claim = results["claim"]
    table = Table(title=f"Claim {claim['id']}: verdict metric = {claim['verdict_metric']['label']}, threshold {claim['threshold']}")
    for column in ("baseline", "verdict", "ratio [CI]", "basis", "tokens/s ratio (informational)"):
        table.add_column(column)
    from artifact.report import verdict_rows

    for row in verdict_rows(results):
        table.add_row(row["baseline"], row["outcome"], row["ratio"], row["basis"], row["tokens_ratio"])
    console.print(table)
    if results["run"]["smoke"]:
        console.print("[bold yellow]Smoke run: checks the pipeline on the tiny model pair; not evidence about Swallow.[/]")


@app.command()
@user_errors
def plan(config: ConfigArgument, set_: SetOption = None, as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False) -> None:
    """Show what a run would do: models, generations, model order per trial, estimated GPU time and cost."""
    from artifact.cost import estimate
    from artifact.pipeline import load_plan

    experiment = _load(config, set_)
    the_plan = load_plan(experiment)
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
    for trial, order in enumerate(the_plan.model_order_by_trial):
        console.print(f"trial {trial}: {' -> '.join(order)}")
    console.print(f"generations: {guess['measured_generations']} measured + {guess['warmup_generations']} warm-up "
                  f"({guess['generated_tokens']} tokens)")
    console.print(f"estimate: {guess['seconds'] / 60:.1f} min, {guess['gpu_hours']:.3f} GPU-hours, "
                  f"{guess['cost_usd']:.2f} USD at {experiment.cost.price_per_gpu_hour_usd} USD/GPU-hour "
                  f"(assumes {experiment.cost.expected_decode_tokens_per_second:g} tokens/s decode and "
                  f"{experiment.cost.expected_load_seconds:g} s per model load, worst case)")


@app.command()
@user_errors
def run(
    config: ConfigArgument,
    set_: SetOption = None,
    output: OutputOption = Path("runs"),
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory (same config).")] = None,
) -> None:
    """Run the experiment: plan, timed trials, analysis and reports, all into a new run directory."""
    from artifact.pipeline import run_experiment

    experiment = _load(config, set_)
    progress = RichProgress()
    try:
        outcome = run_experiment(experiment, output_root=output, resume=resume, progress=progress)
    finally:
        progress.stop()
    print_verdicts(outcome.results)
    console.print(f"report: {outcome.run.file('report.md')}")
    console.print(f"run directory: {outcome.run.path}")


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory written by `artifact run`.")]) -> None:
    """Re-render results.json and the reports from a run directory's records, without running anything."""
    from artifact.pipeline import finalize
    from artifact.store import RunDirectory

    results = finalize(RunDirectory.open(run_dir))
    print_verdicts(results)
    console.print(f"report: {run_dir / 'report.md'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
