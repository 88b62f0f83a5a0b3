#!/usr/bin/env bash
# One prepared session for a lent GPU box (H100/H200, no network, packages preinstalled, at most
# 10 minutes per command): pre-flight, the real-GPU test, the gpu-quick sweep under a time
# budget, the results check; everything packed into $OUT/gpu-run.tgz on any exit. Installs
# nothing, computes no reference (they are shipped: problems/refs/), runs no simulator test.
# The report is built afterwards from the returned run folder (`python -m harness report DIR`).
#
#   bash tools/gpu_session.sh [--dry-run] [SUITE]      (make gpu-session / make gpu-dry-run)
#
# --dry-run runs this same script on a CPU: device cpu, N = 8, a longer cell limit (CPU
# compiles are slower than a GPU box's); it needs no GPU and no network (.ci/run runs it).
# The whole script ends within GPU_SESSION_S (default 480) seconds of wall time: each phase runs
# under `timeout -s INT -k 15` with what is left (SIGINT/SIGTERM close the harness run cleanly,
# finished cells stay), and the sweep's --budget-s leaves time for the check and the packing.
#
# Phases and their seconds are written to $OUT/phases.tsv. Measured 2026-12-01 (dry run, cold
# compile caches, a 2-core CPU VM shared with 7 other jobs: slow and noisy): 410 s in all =
# pre-flight 4 s + GPU test 36 s (12 skipped, no GPU) + sweep 365 s (budget 355 s: 15 ok cells,
# every backend's Lorenz N=8 cells; 5 "skipped": fused rk4_38 and the 4 Robertson cells) +
# check 5 s. Command: `OUT=/tmp/dry GPU_SESSION_CACHE=/tmp/cold bash tools/gpu_session.sh --dry-run`.
# With the GPU box's package set (2026-12-06: Python 3.12.1 venv, jax/jaxlib 0.11.2, numpy 2.5.2,
# no torchode, torchsde, dask or evosax; PYTHON=/path/to/venv/bin/python picks the interpreter):
# exit 0 after 179 s, 24 cells: 22 ok, 2 "unavailable" (torchode by the pre-flight, torchsde by
# its backend), each with the missing package as its reason.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
SUITE=${1:-gpu-quick}
TOTAL_S=${GPU_SESSION_S:-480}
RESERVE_S=25          # after the last phase: the kill grace of timeout (15 s) and the packing
START=$SECONDS

cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d -t gpu-session.XXXXXX)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[[ -z "${PYTHON:-}" && -x .venv/bin/python ]] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX must not take 75% of the GPU while torch and CuPy share it (each backend has its own
# process too); compile caches live outside the returned folder
export XLA_PYTHON_CLIENT_PREALLOCATE=false
CACHE=${GPU_SESSION_CACHE:-/tmp/odebench-gpu-session-cache}
export NUMBA_CACHE_DIR=$CACHE/numba JAX_COMPILATION_CACHE_DIR=$CACHE/jax \
       TORCHINDUCTOR_CACHE_DIR=$CACHE/inductor TRITON_CACHE_DIR=$CACHE/triton \
       CUPY_CACHE_DIR=$CACHE/cupy ODEBENCH_CACHE=$CACHE/odebench
# read the shipped references, never compute one inside the lent time
export ODEBENCH_REFERENCES=shipped

RUN="$OUT/run-$SUITE"
LOG="$OUT/session.log"
PHASES="$OUT/phases.tsv"
STATUS=0

pack() {
  local rc=$?
  [[ $STATUS -ne 0 ]] && rc=$STATUS
  printf 'total\t%d\t%d\n' "$((SECONDS - START))" "$rc" >>"$PHASES"
  local items=()
  for f in "$(basename "$RUN")" preflight.json session.log phases.tsv; do
    [[ -e "$OUT/$f" ]] && items+=("$f")
  done
  tar czf "$OUT/gpu-run.tgz" -C "$OUT" "${items[@]}" && echo "packed $OUT/gpu-run.tgz (${items[*]}) after $((SECONDS - START)) s, exit $rc"
  exit "$rc"
}
trap pack EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

left() { echo $((TOTAL_S - (SECONDS - START) - RESERVE_S)); }

# phase NAME LIMIT_S CMD...: run CMD under the smaller of LIMIT_S and the time left
phase() {
  local name=$1 limit=$2 t0=$SECONDS avail rc
  shift 2
  avail=$(left)
  ((avail < limit)) && limit=$avail
  if ((limit < 5)); then
    echo "== $name: not run, $avail s left"
    printf '%s\t0\tnot run\n' "$name" >>"$PHASES"
    return 0
  fi
  echo "== $name (limit $limit s, $((SECONDS - START)) s into the session)"
  timeout -s INT -k 15 "$limit" "$@"
  rc=$?
  printf '%s\t%d\t%d\n' "$name" "$((SECONDS - t0))" "$rc" >>"$PHASES"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  return $rc
}

exec > >(tee -a "$LOG") 2>&1
printf 'phase\tseconds\texit\n' >"$PHASES"
echo "gpu session: suite $SUITE, dry run $DRY, out $OUT, python $PY, ${TOTAL_S} s"

RUN_ARGS=(--suite "$SUITE" --out "$RUN" --isolate --quiet)
PRE_ARGS=(--suite "$SUITE" --out "$OUT/preflight.json")
if ((DRY)); then
  RUN_ARGS+=(--device cpu --n 8 --cell-timeout 120)
  PRE_ARGS+=(--device cpu)
else
  phase gpu-info 10 nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
fi

phase preflight 30 "$PY" -m harness preflight "${PRE_ARGS[@]}"
# the real CUDA kernel against the CPU kernel and the reference (skipped without a GPU)
phase gpu-test 45 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs harness/tests/test_gpu_real.py

# the sweep: its budget is the soft target (cells it cannot start become "skipped" rows that
# --resume runs later); the timeout, SWEEP_MARGIN_S later, is the hard stop. The margin covers
# what the budget does not see: the harness's start (imports, fingerprint), a backend's child
# process starting, the last cell's cut. 20 s after it are left for the check.
SWEEP_MARGIN_S=40
BUDGET=$(($(left) - 20 - SWEEP_MARGIN_S))
PF=()
[[ -f "$OUT/preflight.json" ]] && PF=(--preflight "$OUT/preflight.json")
if ((BUDGET >= 10)); then
  phase sweep $((BUDGET + SWEEP_MARGIN_S)) "$PY" -m harness run "${RUN_ARGS[@]}" --budget-s "$BUDGET" "${PF[@]}"
fi
# every backend the comparison needs must have brought back an ok cell; --partial: the budget
# leaves "skipped" cells for a later --resume (every row the table holds must still be sound)
phase check 20 "$PY" -m harness check --partial "$RUN" \
  --require-ok fused,array,diffrax,torchdiffeq,jax-handwritten,torch-handwritten || STATUS=1

((DRY)) || phase gpu-info-after 10 nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv
exit $STATUS
