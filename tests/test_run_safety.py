"""Nothing lost, nothing mixed: resume keeps every session's facts, one process per run directory, inputs are
fingerprinted by content, user mistakes stop before a run directory exists, and errors are one plain line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifact.cli import app
from artifact.store import RunDirectory
from conftest import REPO, TINY_MODELS, write_tiny_config

runner = CliRunner()


def tiny_config(tmp_path: Path, name: str = "tiny-safety", models: str = TINY_MODELS) -> Path:
    return write_tiny_config(tmp_path / f"{name}.toml", name, models)


def rows(run_dir: Path, name: str = "trials.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().split("\n") if line.strip()]


def only_run(output: Path) -> Path:
    (run_dir,) = [path for path in output.iterdir() if path.is_dir()]
    return run_dir


def cut_after_measured(run_dir: Path, keep: int) -> None:
    """Simulate a kill -9 after `keep` measured records: later records, and the session's end, never written."""
    lines = (run_dir / "trials.jsonl").read_text().split("\n")
    kept, measured = [], 0
    for line in lines:
        if not line:
            continue
        if json.loads(line)["phase"] == "measure":
            if measured == keep:
                break
            measured += 1
        kept.append(line)
    (run_dir / "trials.jsonl").write_text("\n".join(kept) + "\n")
    sessions = [line for line in (run_dir / "sessions.jsonl").read_text().split("\n") if line and '"end"' not in line]
    (run_dir / "sessions.jsonl").write_text("\n".join(sessions) + "\n")
    for name in ("results.json", "report.md", "report.tex"):
        (run_dir / name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_pair) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("finished")
    config = tiny_config(folder)
    result = runner.invoke(app, ["run", str(config), "--output", str(folder / "runs"), "--set", "trials.warmup=1"])
    assert result.exit_code == 0, result.output
    return config, only_run(folder / "runs")


# --- resume keeps everything ------------------------------------------------------------------------------------


def test_resume_of_a_finished_run_keeps_models_environment_and_telemetry(finished_run: tuple[Path, Path]) -> None:
    config, run_dir = finished_run
    models = json.loads((run_dir / "models.json").read_text())
    environment = (run_dir / "environment.json").read_text()
    telemetry = rows(run_dir, "telemetry.jsonl")
    assert set(models) == {"tiny-expanded", "tiny-baseline"}
    result = runner.invoke(app, ["run", str(config), "--resume", str(run_dir), "--set", "trials.warmup=1"])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "models.json").read_text()) == models  # was {} before: the cost and roofline went
    assert (run_dir / "environment.json").read_text() == environment
    after = rows(run_dir, "telemetry.jsonl")
    assert after[: len(telemetry)] == telemetry and {row["session"] for row in after} == {1, 2}
    sessions = json.loads((run_dir / "results.json").read_text())["sessions"]
    assert [(s["session"], s["outcome"], s["measured_records_added"]) for s in sessions] == [
        (1, "completed", 2 * 2 * 3), (2, "completed", 0)]


def test_an_interrupted_session_is_listed_in_the_report(tmp_path: Path, tiny_pair) -> None:
    config = tiny_config(tmp_path)
    common = ["--set", "trials.warmup=1"]
    assert runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs"), *common]).exit_code == 0
    run_dir = only_run(tmp_path / "runs")
    complete = {row["record_id"] for row in rows(run_dir) if row["phase"] == "measure"}
    cut_after_measured(run_dir, keep=5)
    result = runner.invoke(app, ["run", str(config), "--resume", str(run_dir), *common])
    assert result.exit_code == 0, result.output
    records = rows(run_dir)
    measured = [row["record_id"] for row in records if row["phase"] == "measure"]
    assert sorted(measured) == sorted(complete)  # nothing lost, nothing twice
    warmups = [row["record_id"] for row in records if row["phase"] == "warmup"]
    assert len(warmups) == len(set(warmups))  # repeated "-load1" ids before the fix
    sessions = json.loads((run_dir / "results.json").read_text())["sessions"]
    assert [(s["outcome"], s["measured_records_added"]) for s in sessions] == [("interrupted", 5), ("completed", 7)]
    report = (run_dir / "report.md").read_text()
    assert "## Sessions" in report and "Session 1 was interrupted" in report
    assert "Sessions" in (run_dir / "report.tex").read_text()
    if shutil.which("pdflatex") or shutil.which("lualatex"):
        assert (run_dir / "report.pdf").is_file() and not (run_dir / "report.pdf.log").exists()


# --- one process per run directory; unique new directories -----------------------------------------------------


def subprocess_env(isolated_cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "R2_CACHE_DIR": str(isolated_cache), "HF_HUB_OFFLINE": "1"}


def test_a_second_process_on_a_run_directory_is_refused_with_the_holder(
        finished_run: tuple[Path, Path], isolated_cache: Path) -> None:
    config, run_dir = finished_run
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from artifact.store import RunDirectory; "
         f"lock = RunDirectory(Path({str(run_dir)!r})).lock(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=subprocess_env(isolated_cache))
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (run_dir / "trials.jsonl").read_text()
        result = runner.invoke(app, ["run", str(config), "--resume", str(run_dir), "--set", "trials.warmup=1"])
        assert result.exit_code == 2
        assert f"in use by another artifact process (pid {holder.pid} on host" in result.output
        assert (run_dir / "trials.jsonl").read_text() == before
        result = runner.invoke(app, ["report", str(run_dir)])
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.wait()
    # The kernel frees the lock with the process, even after kill -9: the next resume runs.
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output


def test_runs_started_in_the_same_moment_get_distinct_directories(tmp_path: Path) -> None:
    """16 processes create a run directory of the same name at the same instant: 16 distinct folders, no error."""
    start_at = time.time() + 3
    code = ("import sys, time; from pathlib import Path; from artifact.store import RunDirectory\n"
            f"while time.time() < {start_at}: pass\n"
            f"print(RunDirectory.create(Path({str(tmp_path)!r}), 'same').path)")
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(16)]
    outcomes = [process.communicate() for process in processes]
    assert [err for _, err in outcomes if err] == []
    created = {out.strip() for out, _ in outcomes}
    assert len(created) == 16 and {Path(path).parent for path in created} == {tmp_path}


# --- content fingerprints ---------------------------------------------------------------------------------------


def test_resume_names_the_changed_input_or_field(tmp_path: Path, tiny_pair) -> None:
    prompts = tmp_path / "prompts.jsonl"
    shutil.copyfile(REPO / "dataset" / "prompts_swallow_bench.jsonl", prompts)
    model = tmp_path / "baseline-model"
    shutil.copytree(tiny_pair.folder("tiny-baseline"), model)
    models = TINY_MODELS.replace('builtin = "tiny-baseline"', f'path = "{model}"')  # the baseline from a folder
    assert f'path = "{model}"' in models
    config = write_tiny_config(tmp_path / "edited.toml", "edited", models).read_text().replace("[generation]", f'[generation]\nprompts = "{prompts}"')
    (tmp_path / "edited.toml").write_text(config)
    assert runner.invoke(app, ["run", str(tmp_path / "edited.toml"), "--output", str(tmp_path / "runs")]).exit_code == 0
    run_dir = only_run(tmp_path / "runs")
    resume = ["run", str(tmp_path / "edited.toml"), "--resume", str(run_dir)]

    prompts.write_text(prompts.read_text().replace("日本", "にほん", 1))
    result = runner.invoke(app, resume)
    assert result.exit_code == 2 and "different config" in result.output
    assert "generation.prompts (content)" in result.output  # the same path with new text was mixed in before
    shutil.copyfile(REPO / "dataset" / "prompts_swallow_bench.jsonl", prompts)

    (model / "config.json").write_text((model / "config.json").read_text() + "\n")
    result = runner.invoke(app, resume)
    assert result.exit_code == 2 and "models.tiny-baseline.weights (content)" in result.output
    assert "models.tiny-baseline.tokenizer (content)" in result.output  # the tokenizer comes from the same folder

    result = runner.invoke(app, [*resume, "--set", "trials.measured=3"])
    assert result.exit_code == 2 and "changed: trials.measured," in result.output


# --- checks before the run directory exists ---------------------------------------------------------------------


def test_a_prompt_longer_than_the_context_fails_before_any_model_runs(tmp_path: Path, tiny_pair) -> None:
    prompts = tmp_path / "long.jsonl"
    prompts.write_text(json.dumps({"id": "short", "prompt": "こんにちは"}) + "\n"
                       + json.dumps({"id": "huge", "prompt": "吾輩は猫である。" * 6250}, ensure_ascii=False) + "\n")
    config = tiny_config(tmp_path)
    config.write_text(config.read_text().replace("[generation]", f'[generation]\nprompts = "{prompts}"'))
    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "do not fit its context of 1024 tokens" in result.output and "'huge'" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_bad_data_file_found_by_the_tokens_stage_leaves_no_run_directory(tmp_path: Path, tiny_pair) -> None:
    from artifact.data import load_manifest

    entry = load_manifest().by_loader("jsquad")
    mirror = tmp_path / "mirror"
    (mirror / entry.filename).parent.mkdir(parents=True)
    (mirror / entry.filename).write_text('{"data": []}')
    config = tiny_config(tmp_path)
    config.write_text(config.read_text().replace('corpora = ["prompts"]\nreference = "prompts"',
                                                 'corpora = ["jsquad"]\nreference = "jsquad"'))
    result = runner.invoke(app, ["run", str(config), "--output", str(tmp_path / "runs"), "--data-mirror", str(mirror)])
    assert result.exit_code == 2 and "sha256 mismatch" in result.output, result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(("name", "why"), [("../escape", "cannot name a run directory"), ("a/b", "no '/'"),
                                           ("", "cannot name a run directory"), ("x" * 300, "1 to 100 bytes")])
def test_experiment_name_must_name_one_folder(tmp_path: Path, name: str, why: str) -> None:
    config = tiny_config(tmp_path)
    result = runner.invoke(app, ["plan", str(config), "--set", f"experiment.name={json.dumps(name)}"])
    assert result.exit_code == 2 and why in result.output and "Traceback" not in result.output


def test_plan_refuses_an_unknown_claim(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(tiny_config(tmp_path)), "--set", 'experiment.claim="R-9"'])
    assert result.exit_code == 2 and "unknown claim 'R-9'" in result.output


def test_negative_load_seconds_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(tiny_config(tmp_path)), "--set", "cost.expected_load_seconds=-60"])
    assert result.exit_code == 2 and "--set cost.expected_load_seconds=-60: expected >= 0" in result.output


def test_set_max_new_tokens_carries_min_and_errors_name_the_set(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "smoke", "--set", "generation.max_new_tokens=32"])
    assert result.exit_code == 0, result.output
    assert "32 forced new tokens" in result.output
    result = runner.invoke(app, ["plan", "smoke", "--set", "trials.measured=many"])
    assert result.exit_code == 2 and "--set trials.measured=many: expected an integer" in result.output
    result = runner.invoke(app, ["plan", "smoke", "--set", "generation.max_new_tokens=32",
                                 "--set", "generation.min_new_tokens=16"])
    assert result.exit_code == 2 and "--set generation.min_new_tokens=16: must equal max_new_tokens" in result.output


# --- plain one-line errors --------------------------------------------------------------------------------------


def test_bracketed_text_is_printed_as_written(tmp_path: Path, tiny_pair) -> None:
    result = runner.invoke(app, ["plan", "smoke", "--set", "trials.measurd=1"])
    assert result.exit_code == 2 and "unknown field(s) in [trials]" in result.output
    output = tmp_path / "out[" / "x]"
    result = runner.invoke(app, ["run", str(tiny_config(tmp_path)), "--output", str(output)])
    assert result.exit_code == 0, result.output  # rc 1 (a Rich MarkupError) after the whole run before
    assert f"run directory: {output}" in result.output.replace("\n", "")


def test_os_errors_a_user_causes_are_one_line(tmp_path: Path) -> None:
    long_output = tmp_path / ("n" * 300)
    result = runner.invoke(app, ["run", str(tiny_config(tmp_path)), "--output", str(long_output)])
    assert result.exit_code == 2 and "File name too long" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["report", str(long_output / "run")])
    assert result.exit_code == 2 and "File name too long" in result.output
    tokenizer = f"a={tiny_tokenizer()}"
    result = runner.invoke(app, ["tokens", "--tokenizer", tokenizer, "--tokenizer", tokenizer, "--corpus", "prompts",
                                 "-o", str(tmp_path / "absent" / "tokens.json")])
    assert result.exit_code == 2 and "No such file or directory" in result.output
    assert len(result.output.strip().splitlines()[-1]) > 0 and "Traceback" not in result.output


def tiny_tokenizer() -> str:
    from artifact.tiny import ensure_tiny_pair

    return str(ensure_tiny_pair().folder("tiny-baseline"))


@contextmanager
def small_file_system(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (needs root and a kernel that lets this container mount; else the test skips, saying so)."""
    target = tmp_path / "mnt"
    target.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (run as root, or in CI's container)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(folder: Path) -> None:
    descriptor = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: the file system is full
    finally:
        os.close(descriptor)


def test_a_full_disk_and_a_read_only_run_directory_are_one_line_errors(
        finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    config, run_dir = finished_run
    with small_file_system(tmp_path, "4m") as mount:
        copy = mount / run_dir.name
        shutil.copytree(run_dir, copy)
        fill(mount)
        result = runner.invoke(app, ["report", str(copy)])
        assert result.exit_code == 2, result.output
        assert "No space left on device" in result.output and "Traceback" not in result.output
        assert not list(copy.glob("*.tmp"))
        tokenizer = f"a={tiny_tokenizer()}"
        result = runner.invoke(app, ["tokens", "--tokenizer", tokenizer, "--tokenizer", tokenizer, "--corpus", "prompts",
                                     "-o", str(mount / "tokens.json")])
        assert result.exit_code == 2 and "No space left on device" in result.output, result.output
        (mount / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for arguments in (["report", str(copy)], ["run", str(config), "--resume", str(copy), "--set", "trials.warmup=1"]):
            result = runner.invoke(app, arguments)
            assert result.exit_code == 2, result.output
            assert "Read-only file system" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("override", "message"), [
    ("experiment.seed=-1", "--set experiment.seed=-1: expected an integer in [0, 2**63)"),
    ("generation.temperature=nan", "--set generation.temperature=nan: expected a finite number"),
    ("trials.measured=100000000000", "--set trials.measured=100000000000: expected an integer > 0 and <= 10,000"),
])
def test_values_that_would_fail_late_or_never_finish_are_refused_up_front(tmp_path: Path, override: str,
                                                                          message: str) -> None:
    result = runner.invoke(app, ["plan", str(tiny_config(tmp_path)), "--set", override])
    assert result.exit_code == 2 and message in result.output, result.output


def test_how_each_corpus_was_cut_is_in_the_results_and_the_report(finished_run: tuple[Path, Path], mirror: Path,
                                                                  tmp_path: Path) -> None:
    _, run_dir = finished_run
    assert "- `prompts`: the benchmark prompts, one document each, as written." in (run_dir / "report.md").read_text()
    tokenizer = f"a={tiny_tokenizer()}"
    result = runner.invoke(app, ["tokens", "--tokenizer", tokenizer, "--tokenizer", tokenizer.replace("a=", "b="),
                                 "--corpus", "jsquad", "--data-mirror", str(mirror), "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    (jsquad,) = json.loads((tmp_path / "t.json").read_text())["summary"]["corpora"]
    assert "titles dropped" in jsquad["preparation"]


def test_without_a_data_mirror_data_tests_fetch_or_fail_with_the_reason(tmp_path: Path) -> None:
    """Never a silent skip: with no mirror, a test that needs data downloads it, or fails saying why."""
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_tokenization.py"),
         "-k", "count_tokens_excludes_bos"],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "R2_TEST_DATA_MIRROR": str(tmp_path / "no-mirror"),
             "R2_CACHE_DIR": str(tmp_path / "cache")})
    assert "skipped" not in completed.stdout.splitlines()[-1]
    if completed.returncode != 0:
        assert f"no data mirror at {tmp_path / 'no-mirror'}" in completed.stdout
        assert "downloading the manifest's files failed" in completed.stdout
