"""make setup [GPU=1|0]: which TensorFlow build and which pinned packages scripts/setup.sh installs.

The GPU path cannot run here (no GPU, and the CUDA wheels are GBs), so setup.sh's own dry run
(MASKSET_SETUP_DRY_RUN=1: the pip commands printed, not run) is checked: the CUDA build replaces
the CPU build at the same version, the other build is uninstalled first (both own tensorflow/),
the choice sticks until GPU= says otherwise, and the --no-deps packages come from their own list.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def setup(venv: Path, gpu: str = "") -> list[str]:
    result = subprocess.run(["bash", "scripts/setup.sh", "python3.11", str(venv), gpu], cwd=REPO, text=True,
                            capture_output=True, env={**os.environ, "MASKSET_SETUP_DRY_RUN": "1"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("pip ")]


def pin(path: str, name: str) -> str:
    (line,) = [l for l in (REPO / path).read_text().splitlines() if re.match(rf"{re.escape(name)}==", l)]
    return line.split("==")[1].split()[0]


def test_gpu_installs_tensorflows_cuda_build_at_the_cpu_builds_version(tmp_path):
    commands = setup(tmp_path / "venv", "1")
    version = pin("requirements.txt", "tensorflow-cpu")
    assert pin("requirements-gpu.txt", "tensorflow[and-cuda]") == version == "2.15.1"
    uninstall = commands.index("pip uninstall -y tensorflow-cpu")
    install = next(i for i, c in enumerate(commands) if f"tensorflow[and-cuda]=={version}" in c)
    assert uninstall < install                       # the CPU build goes first: both own tensorflow/
    assert not any("tensorflow-cpu==" in c for c in commands)
    rest = (tmp_path / "venv" / ".maskset-requirements.txt").read_text()
    assert "tensorflow-cpu" not in rest and "keras==2.15.0" in rest and "numpy==1.26.4" in rest
    assert "pip install --no-deps -r requirements-nodeps.txt" in commands
    assert (tmp_path / "venv" / ".maskset-tensorflow").read_text().strip() == "gpu"


def test_the_cpu_build_is_the_default_and_the_choice_sticks_until_changed(tmp_path):
    venv = tmp_path / "venv"
    fresh = setup(venv)
    assert any("tensorflow-cpu==2.15.1" in c for c in fresh) and not any("and-cuda" in c for c in fresh)
    assert not any("--force-reinstall" in c for c in fresh)
    setup(venv, "1")
    again = setup(venv)                              # GPU unset: the venv keeps the CUDA build
    assert any("tensorflow[and-cuda]==2.15.1" in c for c in again) and not any("--force-reinstall" in c for c in again)
    back = setup(venv, "0")                          # GPU=0: the CPU build again, its files restored
    assert back.index("pip uninstall -y tensorflow") < back.index("pip install --force-reinstall --no-deps "
                                                                  "tensorflow-cpu==2.15.1")


def test_a_gpu_word_it_does_not_know_is_refused(tmp_path):
    result = subprocess.run(["bash", "scripts/setup.sh", "python3.11", str(tmp_path / "v"), "maybe"], cwd=REPO,
                            text=True, capture_output=True, env={**os.environ, "MASKSET_SETUP_DRY_RUN": "1"})
    assert result.returncode == 1 and "GPU=maybe: expected 1" in result.stderr


@pytest.mark.parametrize("name, version", [("tf2onnx", "1.17.0"), ("onnx", "1.17.0"), ("onnxruntime", "1.22.1"),
                                           ("ncnn", "1.0.20261020"), ("pnnx", "20261020")])
def test_the_deploy_packages_are_pinned_installed_and_leave_numpy_and_protobuf_alone(name, version):
    """What make setup installs --no-deps is what this venv has, beside numpy 1.26.4 and protobuf 4.25.9."""
    import importlib.metadata as metadata
    assert pin("requirements-nodeps.txt", name) == version
    assert metadata.version(name) == version
    assert metadata.version("numpy") == pin("requirements.txt", "numpy") == "1.26.4"
    assert metadata.version("protobuf") == "4.25.9"


def test_the_deploy_runtimes_import_without_their_undeclared_extras():
    """onnxruntime declares coloredlogs and sympy, ncnn portalocker, pnnx torch: none is needed."""
    code = ("import onnxruntime, ncnn, tf2onnx, onnx, sys; "
            "assert 'torch' not in sys.modules and 'sympy' not in sys.modules; "
            "print(onnxruntime.get_available_providers())")
    result = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120)
    assert result.returncode == 0 and "CPUExecutionProvider" in result.stdout, result.stderr[-2000:]
