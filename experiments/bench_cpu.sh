#!/usr/bin/env bash
# Re-measure every CPU figure of chapter 9 and of the performance table in nbs/using_nanovlm.md; JSON and a summary go to
# experiments/results/<date>/. Run it on a quiet machine from the repository root:
#
#   NANOVLM_REF=<folder holding nanoVLM v0.1's models/*.py> experiments/bench_cpu.sh [CORE]
#
# One-thread runs are pinned to CORE (default 1) with taskset; two-thread runs use whatever the process may use.
# NANOVLM_REF unset: the side-by-side with nanoVLM v0.1 is skipped. CHECKPOINT=<a tiny nanovlm-train run> adds the
# bf16-versus-fp32 answers check. COMPILE=1 adds torch.compile'd 222M training (minutes of compilation per precision).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=experiments/results/$(date +%F)
mkdir -p "$out"
one="taskset -c ${1:-1}"
bench="$py -m nanovlm.benchmarks --device cpu"
big="--preset nanovlm-222m --gen-batch-sizes 1 --repeats 3 --warmup 1"
$one $bench --preset tiny --batch-size 64 --threads 1 --json "$out/tiny-1thread.json"
$bench --preset tiny --batch-size 64 --threads 2 --json "$out/tiny-2threads.json"
$one $bench $big --threads 1 --json "$out/222m-1thread.json"
$bench $big --threads 2 --json "$out/222m-2threads.json"
if [[ "${COMPILE:-0}" == 1 ]]; then $one $bench $big --threads 1 --compile --skip-generate --json "$out/222m-compiled-1thread.json"; fi
$one $py experiments/step_breakdown.py --threads 1 --json "$out/step-breakdown.json"
if [[ -n "${NANOVLM_REF:-}" ]]; then
  $one $py experiments/vs_nanovlm_v01.py --threads 1 --json "$out/vs-nanovlm-v01.json"
  if [[ "${COMPILE:-0}" == 1 ]]; then
    $one $py experiments/vs_nanovlm_v01.py --threads 1 --compile --skip-generate --json "$out/vs-nanovlm-v01-compiled.json"
  fi
fi
if [[ -n "${CHECKPOINT:-}" ]]; then $one $py experiments/bf16_generation_check.py --checkpoint "$CHECKPOINT" --json "$out/bf16-answers.json"; fi
$py experiments/bench_summary.py "$out" | tee "$out/summary.md"
