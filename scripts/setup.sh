#!/usr/bin/env bash
# Build .venv with the versions known to work together here (see requirements.txt), then check
# the system packages the stages need. Safe to re-run: pip skips what is installed.
#
#   scripts/setup.sh PYTHON VENV [GPU]    GPU=1: TensorFlow's CUDA build (tensorflow[and-cuda],
#                                          requirements-gpu.txt) instead of tensorflow-cpu, at the
#                                          same version; GPU=0: back to the CPU build; unset: the
#                                          build this venv has (the CPU one in a new venv).
# Both builds install the same `tensorflow/` package, so the other one is uninstalled first.
# MASKSET_SETUP_DRY_RUN=1 prints the pip commands instead of running them (tests/test_setup.py).
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}
gpu=${3:-}
dry=${MASKSET_SETUP_DRY_RUN:-}
flavour_file="$venv/.maskset-tensorflow"
previous=$(cat "$flavour_file" 2>/dev/null || true)
case "${gpu,,}" in
  1|yes|true|on) flavour=gpu ;;
  0|no|false|off) flavour=cpu ;;
  "") flavour=${previous:-cpu} ;;
  *) echo "error: GPU=$gpu: expected 1 (TensorFlow's CUDA build) or 0 (the CPU build)." >&2; exit 1 ;;
esac
cpu_tf=$(grep -E '^tensorflow-cpu==' requirements.txt)
gpu_tf=$(grep -E '^tensorflow\[and-cuda\]==' requirements-gpu.txt)
if [ "${cpu_tf#*==}" != "${gpu_tf#*==}" ]; then
  echo "error: requirements.txt pins $cpu_tf but requirements-gpu.txt $gpu_tf; they must be one version." >&2
  exit 1
fi

if [ -n "$dry" ]; then
  pip=(echo pip)
  mkdir -p "$venv"
else
  if ! command -v "$python" >/dev/null; then
    echo "error: $python not found. maskset needs Python 3.11 (keras-retinanet 1.0.0 and" >&2
    echo "tensorflow-cpu 2.15.1 have no builds for newer Pythons). Install it, or run" >&2
    echo "  make setup PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
    echo "error: $python is $("$python" --version 2>&1), maskset needs Python 3.11." >&2; exit 1; }
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
fi
echo "setup: installing pinned packages into $venv, TensorFlow's ${flavour^^} build (first time: a few minutes)"
"${pip[@]}" install --upgrade "pip<26" "setuptools<76" wheel
# numpy<2 and cython first: keras-retinanet compiles compute_overlap against them.
"${pip[@]}" install "$(grep -E '^numpy==' requirements.txt)" "$(grep -E '^cython==' requirements.txt)"
# one TensorFlow build: the other one goes first (both own tensorflow/); after a switch, the
# files that uninstall took from tensorflow/ come back with a forced reinstall
if [ "$flavour" = gpu ]; then
  tf=$gpu_tf
  "${pip[@]}" uninstall -y tensorflow-cpu
else
  tf=$cpu_tf
  cuda=()
  if [ -z "$dry" ] && [ "$previous" = gpu ]; then
    mapfile -t cuda < <("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | sed -n 's/^\(nvidia-[A-Za-z0-9-]*-cu12\)==.*/\1/p')
  fi
  "${pip[@]}" uninstall -y tensorflow "${cuda[@]}"
fi
if [ -n "$previous" ] && [ "$previous" != "$flavour" ]; then
  "${pip[@]}" install --force-reinstall --no-deps "$tf"
fi
"${pip[@]}" install "$tf" "$(grep -E '^numpy==' requirements.txt)"
# the rest of requirements.txt: its TensorFlow line is the CPU build, installed (or not) above
rest="$venv/.maskset-requirements.txt"
grep -vE '^tensorflow-cpu==' requirements.txt > "$rest"
"${pip[@]}" install -r "$rest"
# packages whose declared dependencies would pull in what maskset must not have (pnnx declares
# torch; the others would move numpy or protobuf): installed without them, each checked here
"${pip[@]}" install --no-deps -r requirements-nodeps.txt
echo "$flavour" > "$flavour_file"
if [ -n "$dry" ]; then exit 0; fi
if ! "$venv/bin/python" -c 'import keras_retinanet.utils.compute_overlap' 2>/dev/null; then
  echo "setup: building keras-retinanet 1.0.0 from its sdist"
  "${pip[@]}" install --no-build-isolation --no-cache-dir --no-binary keras-retinanet keras-retinanet==1.0.0
fi
"$venv/bin/python" -c 'import keras_retinanet.utils.compute_overlap, tensorflow, labelImg, onnxruntime, tf2onnx, ncnn' 2>/dev/null || {
  echo "error: the venv is incomplete; remove $venv and run make setup again." >&2; exit 1; }
# maskset itself, editable: the `maskset` command, and the packages importable without PYTHONPATH
"${pip[@]}" install --no-deps --no-build-isolation -e .
"$venv/bin/python" scripts/check_system.py --devices || true
