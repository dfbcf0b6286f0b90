#!/usr/bin/env bash
# bench/gpu_check.sh OUTDIR: the one GPU check of issues 11 and 12, under 8 minutes on one H100 (220 s on 2026-11-27, before stage 5,
# the extra training-step rows and host times, the split-K sweep and the kernels' A/B were added: expect about 400 s; the
# stages run in order of value, so a short deadline cuts ncu first). Run from anywhere.
#
#   1. install the wheelhouse in .whl/ (nbdev, fastcore, hqq and its termcolor, torchao for Python 3.12; built on a CPU
#      machine by bench/make_gpu_wheels.sh .whl) into /tmp/site, and put the checkout on PYTHONPATH;
#   2. in parallel: the `#| cuda` cells of the kernel (05), linear (08), mixed-bit (09), tinygemm (10) and dora (12) chapters
#      (QL_TEST_FLAGS=cuda, i.e. nbdev-test --flags cuda), and bench/sanitize_kernels.py without a sanitizer
#      (every kernel variant on small shapes, checked; it also fills CuPy's kernel cache);
#   3. alone on the GPU: bench/kernels.py, the side-by-side benchmark (with a split-K sweep at M=1) -> OUTDIR/kernels.{json,md}, and
#      bench/dora_step.py gpu, the training step beside dense LoRA and peft (issue 12) -> OUTDIR/dora_step_gpu.{json,md},
#      and the same steps captured in CUDA graphs (--graphs: device time alone) -> OUTDIR/dora_step_gpu_graphs.{json,md}
#      (the eager table also has each step's host time and the host cost of single launches, ATen's and our CuPy kernels');
#   4. compute-sanitizer memcheck over every variant, racecheck over the shared-memory kernels (the matmuls, the
#      mixed-bit dequantize);
#   5. Nsight Compute (ncu) over the kernels that miss their targets (bench/profile_kernels.py), into the log.
#
# QL_SAVE_NBS=REGEX writes the outputs of each passing chapter whose path matches back (nbdev-test --save) and copies
# it to OUTDIR/saved_*.ipynb (a run returns at most 8 files: name few).
# QL_GPU_CHECK_NBS=REGEX tests only the chapters whose paths match.
# QL_GPU_CHECK_SKIP=REGEX skips the stages whose names match (a rerun after a fix, e.g. QL_GPU_CHECK_SKIP='dora_step').
# Each stage has a time limit and a share of a global deadline; a failed or timed-out stage is recorded and the
# next one still runs. OUTDIR/summary.md is rewritten after every stage; all output goes to OUTDIR/gpu_check.log.
# Dry run on a CPU machine: bash bench/gpu_check.sh --dry-run OUTDIR (checks the script's plumbing: the python
# scripts' --dry-run modes, no GPU stage).
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out=${1:?usage: bench/gpu_check.sh [--dry-run] OUTDIR}
mkdir -p "$out"; out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
log="$out/gpu_check.log"; summary="$out/summary.md"; envf=$(mktemp)   # env kept out of OUTDIR (8 files come back)
: >"$log"
t_start=$SECONDS
deadline=${QL_GPU_CHECK_SECONDS:-460}   # whole script, seconds
rows=()

write_summary() {
  {
    echo "# GPU check (issues 11 and 12)"
    echo
    echo "Host: $(hostname); started $(date -u -d @$(( $(date +%s) - SECONDS + t_start )) '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null); elapsed $((SECONDS - t_start)) s of ${deadline} s."
    echo
    echo '```'
    cat "$envf" 2>/dev/null
    echo '```'
    echo
    echo "| stage | result | seconds |"
    echo "|---|---|---|"
    for r in "${rows[@]}"; do echo "$r"; done
    if [ -f "$out/kernels.md" ]; then echo; sed 's/^# /## /' "$out/kernels.md"; fi
    for f in "$out"/dora_step_gpu*.md; do [ -f "$f" ] && { echo; sed 's/^# /## /' "$f"; }; done
  } >"$summary"
}

# stage NAME LIMIT CMD...: run CMD with min(LIMIT, time left - reserve) seconds; record the result
stage() {
  local name=$1 limit=$2; shift 2
  if [ -n "${QL_GPU_CHECK_SKIP:-}" ] && [[ "$name" =~ $QL_GPU_CHECK_SKIP ]]; then   # a rerun of some stages only
    rows+=("| $name | skipped (QL_GPU_CHECK_SKIP) | 0 |"); write_summary; return 0
  fi
  local left=$(( deadline - (SECONDS - t_start) - ${QL_RESERVE:-5} ))
  if [ "$left" -lt 15 ]; then rows+=("| $name | skipped (no time left) | 0 |"); write_summary; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS rc size
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)" >>"$log"
  size=$(stat -c %s "$log")
  timeout --kill-after=5 "$limit" "$@" >>"$log" 2>&1; rc=$?
  local res="ok"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && res="TIMED OUT after ${limit}s"
  [ $rc -ne 0 ] && [ "$res" = "ok" ] && res="FAILED (rc $rc)"
  local tail_line; tail_line=$(tail -c +$((size + 1)) "$log" | grep -E '^[0-9]+ passed, [0-9]+ failed|^notebooks:|ERROR SUMMARY|RACECHECK SUMMARY' | tail -2 | tr '\n' ' ')
  rows+=("| $name | $res${tail_line:+: $tail_line} | $((SECONDS - t0)) |")
  echo "=== $name: $res ($((SECONDS - t0)) s)" >>"$log"
  write_summary
  return 0
}

# ---- environment ----
{
  echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) files changed"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name())" 2>&1
  python3 -c "import cupy; print('cupy', cupy.__version__)" 2>&1 | tail -1
  echo "compute-sanitizer: $(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || echo none)"
} >"$envf" 2>&1
write_summary

# ---- 1. install ----
site=/tmp/ql_site
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  stage "install wheelhouse" 90 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
else
  rows+=("| install wheelhouse | skipped (no .whl/ folder) | 0 |")
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)


# ---- 2. tests, in parallel (correctness only: timings come later, alone) ----
nbtest() {  # one chapter's cuda cells, its own log, a PASS/FAIL line
  local nb=$1 l="$out/.nb_$(basename "$1").log"
  local save=; [ -n "${QL_SAVE_NBS:-}" ] && [[ "$nb" =~ $QL_SAVE_NBS ]] && save=--save
  if nbdev-test "$nb" --flags cuda --do-print $save >"$l" 2>&1; then
    echo "PASS $nb"
    [ -n "${QL_SAVE_NBS:-}" ] && [[ "$nb" =~ $QL_SAVE_NBS ]] && cp "$nb" "$out/saved_$(basename "$nb")"   # the run's outputs come back
  else echo "FAIL $nb"; tail -40 "$l"; fi
}
tests() {
  local pids=() f
  for f in nbs/05_kernels.ipynb nbs/08_linear.ipynb nbs/09_mixedbit.ipynb nbs/10_tinygemm.ipynb nbs/12_dora.ipynb; do
    if [ -n "${QL_GPU_CHECK_NBS:-}" ] && ! [[ "$f" =~ $QL_GPU_CHECK_NBS ]]; then continue; fi   # a rerun of some chapters only
    if [ -f "$f" ]; then nbtest "$f" >"$out/.res_$(basename "$f")" 2>&1 & pids+=($!); fi
  done
  python3 bench/sanitize_kernels.py >"$out/.sanitize_plain.log" 2>&1 & local sp=$!
  wait "${pids[@]}"; wait $sp; local src=$?
  cat "$out"/.res_* ; echo "--- sanitize_kernels.py (no sanitizer):"; cat "$out/.sanitize_plain.log"
  local p f2; p=$(cat "$out"/.res_* | grep -c '^PASS'); f2=$(cat "$out"/.res_* | grep -c '^FAIL')
  for l in "$out"/.nb_*.log; do echo "--- $l"; tail -25 "$l"; done
  rm -f "$out"/.res_* "$out"/.nb_*.log "$out/.sanitize_plain.log"
  echo "notebooks: $p passed, $f2 failed; sanitize_kernels.py rc $src"
  [ "$f2" -eq 0 ] && [ $src -eq 0 ]
}
if [ $dry -eq 1 ]; then
  stage "dry run: bash -n" 10 bash -n "$0"
  export -f tests nbtest; export out
  stage "dry run: the test stage's functions reach a child bash" 10 bash -c 'declare -F tests nbtest && [ -n "$out" ]' 
  stage "dry run: sanitize_kernels.py" 120 python3 bench/sanitize_kernels.py --dry-run
  stage "dry run: kernels.py" 120 python3 bench/kernels.py --dry-run --out "$out"
  stage "dry run: dora_step.py gpu" 180 python3 bench/dora_step.py gpu --dry-run --out "$out"
  stage "dry run: dora_step.py gpu --graphs" 180 python3 bench/dora_step.py gpu --graphs --dry-run --out "$out"
  stage "dry run: profile_kernels.py" 60 python3 bench/profile_kernels.py --dry-run
  write_summary; cat "$summary"; exit 0
fi

export -f tests nbtest; export out   # `timeout` runs programs, not shell functions: a child bash runs them
stage "cuda cells (05, 08, 09, 10, 12) + every kernel variant checked" 150 bash -c tests

# ---- 3. the benchmarks, alone on the GPU ----
stage "benchmark bench/kernels.py" 170 python3 bench/kernels.py --out "$out"
stage "benchmark bench/dora_step.py gpu (issue 12)" 100 python3 bench/dora_step.py gpu --out "$out"
stage "benchmark bench/dora_step.py gpu --graphs (device time of each step)" 80 python3 bench/dora_step.py gpu --graphs --out "$out"

# ---- 4. compute-sanitizer ----
if [ -n "$sanitizer" ]; then
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1   # one allocation per tensor, so memcheck sees out-of-bounds accesses
  stage "compute-sanitizer memcheck (every variant)" 110 "$sanitizer" --tool memcheck --error-exitcode 9 python3 bench/sanitize_kernels.py
  stage "compute-sanitizer racecheck (shared-memory kernels)" 70 "$sanitizer" --tool racecheck --error-exitcode 9 python3 bench/sanitize_kernels.py --only matmul,mb_dequantize,mb_matmul,column_dots,dora_scale --quick
  unset PYTORCH_NO_CUDA_MEMORY_CACHING
else
  rows+=("| compute-sanitizer | skipped (not found) | 0 |")
fi

# ---- 5. Nsight Compute on the kernels that miss their targets (what limits them: achieved bandwidth, occupancy, stalls) ----
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$ncu_bin" ]; then
  stage "ncu over the kernels that miss their targets (bench/profile_kernels.py)" 100 "$ncu_bin" --kernel-name regex:ql_ \
    --launch-count 40 --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
    --section WarpStateStats python3 bench/profile_kernels.py
else
  rows+=("| ncu | skipped (not found) | 0 |")
fi

write_summary
cat "$summary"
