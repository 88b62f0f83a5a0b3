#!/usr/bin/env bash
# One prepared GPU session for the lent device machine (H100/H200, no network, packages
# preinstalled): GPU correctness checks, then the gpu-quick suite, figures and report, all
# packed into $OUT/gpu-run.tgz (the device tool returns at most 8 files). Installs nothing.
#   usage (from the repo root on the GPU box): bash tools/gpu_session.sh [SUITE] [BUDGET_S]
set -uo pipefail
SUITE=${1:-gpu-quick}
BUDGET_S=${2:-420}
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
RUN="$OUT/run-$SUITE"
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
  python3 -m harness list
  # the GPU paths that CPU CI cannot exercise: CuPy replica, launch counting, CUDA kernels
  timeout 120 python3 -m pytest -q -x -p no:cacheprovider solvers/array harness/tests/test_launches.py \
      solvers/fused/tests -k "gpu or cuda or cupy or launches" 2>&1 | tail -n 15
  timeout "$BUDGET_S" python3 -m harness run --suite "$SUITE" --out "$RUN" --isolate
  echo "run exit: $?"
  # a sweep cut by the budget keeps its finished cells; report on what is there
  python3 -m harness report "$RUN"
  nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv
} 2>&1 | tee "$OUT/session.log"
tar czf "$OUT/gpu-run.tgz" -C "$OUT" "$(basename "$RUN")" session.log
echo "packed $OUT/gpu-run.tgz"
