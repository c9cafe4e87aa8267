#!/usr/bin/env bash
# Build .venv with the versions known to work together here (see requirements.txt), then check
# the system packages the stages need. Safe to re-run: pip skips what is installed.
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}
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
echo "setup: installing pinned packages into $venv (first time: a few minutes)"
"${pip[@]}" install --upgrade "pip<26" "setuptools<76" wheel
# numpy<2 and cython first: keras-retinanet compiles compute_overlap against them.
"${pip[@]}" install "$(grep -E '^numpy==' requirements.txt)" "$(grep -E '^cython==' requirements.txt)"
"${pip[@]}" install -r requirements.txt
if ! "$venv/bin/python" -c 'import keras_retinanet.utils.compute_overlap' 2>/dev/null; then
  echo "setup: building keras-retinanet 1.0.0 from its sdist"
  "${pip[@]}" install --no-build-isolation --no-cache-dir --no-binary keras-retinanet keras-retinanet==1.0.0
fi
"$venv/bin/python" -c 'import keras_retinanet.utils.compute_overlap, tensorflow, labelImg' 2>/dev/null || {
  echo "error: the venv is incomplete; remove $venv and run make setup again." >&2; exit 1; }
# maskset itself, editable: the `maskset` command, and the packages importable without PYTHONPATH
"${pip[@]}" install --no-deps --no-build-isolation -e .
"$venv/bin/python" scripts/check_system.py || true
