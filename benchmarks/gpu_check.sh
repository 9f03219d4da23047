#!/usr/bin/env bash
# GPU check: on a CUDA machine with PyTorch preinstalled and no network, run the test suite's
# CUDA-marked tests and both benchmarks at paper sizes, in under 8 minutes (stage limits sum to 460 s), writing
# every figure to ONE file.
#
#   bash benchmarks/gpu_check.sh [OUTFILE]        (default: $OUT/gpu_check.txt if $OUT is set, else ./gpu_check.txt)
#
# Run from the repository root. The package is used from src/ (PYTHONPATH), nothing is installed or downloaded.
# Each stage has its own time limit; a stage that fails or times out is reported and the next one still runs.
# Exit status: 0 when every stage passed, 1 otherwise, 2 when there is no CUDA device or a module is missing.
set -u
cd "$(dirname "$0")/.."
OUTFILE="${1:-${OUT:+$OUT/}gpu_check.txt}"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
: > "$OUTFILE"
log() { echo "$*" | tee -a "$OUTFILE"; }

log "# inrlens gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! "$PY" - >>"$OUTFILE" 2>&1 <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    print("gpu_check: error: CUDA is not available to torch", torch.__version__); sys.exit(2)
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}; torch {torch.__version__}, CUDA {torch.version.cuda}")
missing = []
for m in ("numpy", "PIL", "skimage", "pytest", "tqdm", "safetensors"):
    try:
        __import__(m)
    except ImportError:
        missing.append(m)
if missing:
    print("gpu_check: error: missing Python modules (no network here): " + ", ".join(missing)); sys.exit(2)
EOF
then
  tail -n 2 "$OUTFILE"
  exit 2
fi
tail -n 1 "$OUTFILE"

fails=0
stage() {  # stage NAME SECONDS CMD...
  local name="$1" limit="$2"; shift 2
  log ""
  log "## $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -e '^\s*$' | tee -a "$OUTFILE"
  local rc=${PIPESTATUS[0]}
  log "## $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || fails=$((fails + 1))
}

# 1. CUDA-marked tests (fused Adam, compile, memory estimate vs allocator peak, CPU/GPU agreement).
stage "cuda tests" 100 "$PY" -m pytest -q -m cuda -p no:cacheprovider --continue-on-collection-errors tests
# 2. Stacked engine vs plain per-image loop at 64² (target ≥ 12×) and 256² (target ≥ 1.3× with compile + TF32).
stage "bench_fit 64px fp32" 50 "$PY" benchmarks/bench_fit.py --device cuda --res 64 --width 256 --batch 16 --steps 200 --repeats 3
stage "bench_fit 256px tf32" 90 "$PY" benchmarks/bench_fit.py --device cuda --res 256 --width 256 --batch 16 --steps 100 --repeats 3 --tf32
stage "bench_fit 256px tf32+compile" 150 "$PY" benchmarks/bench_fit.py --device cuda --res 256 --width 256 --batch 16 --steps 100 --repeats 3 --tf32 --compile
# 3. Freeze sweep per depth (cache on/off), cohort vs single step, paper-grid estimate at 256², width 256.
stage "bench_sweep 256px tf32" 70 "$PY" benchmarks/bench_sweep.py --device cuda --res 256 --width 256 --members 16 --steps 30 --repeats 3 --tf32
log "# done: $fails stage(s) failed"
[ "$fails" -eq 0 ]
