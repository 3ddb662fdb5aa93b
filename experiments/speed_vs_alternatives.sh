#!/usr/bin/env bash
# Issue 28's figures, re-measured in one go on a quiet machine (nothing else running), one thread pinned to CORE:
# decoding SmolLM2-135M against llama.cpp (same BF16 GGUF), a training step against nanoVLM v0.1 (eager and
# compiled), the tiny preset's bf16 step against the bf16 matmul peak, `nanovlm-bench --gguf`, and the per-op
# profile of one decode step. JSON goes to experiments/results/<date>/.
#
#   bash experiments/build_llamacpp.sh       # once
#   NANOVLM_REF=<folder holding nanoVLM v0.1's models/*.py> bash experiments/speed_vs_alternatives.sh [CORE] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=experiments/results/$(date +%F)
mkdir -p "$out"
core=${1:-1}
n=${2:-3}
one="env OMP_NUM_THREADS=1 taskset -c $core"
uptime | tee "$out/load-before.txt"
$one $py experiments/decode_vs_llamacpp.py --repeats "$n" --json "$out/decode-vs-llamacpp.json"
$one $py -m nanovlm.benchmarks --gguf --threads 1 --compile --repeats "$n" --json "$out/smollm2-bench.json"
$one $py experiments/decode_profile.py --json "$out/decode-profile.json"
if [[ -n "${NANOVLM_REF:-}" ]]; then
  $one $py experiments/vs_nanovlm_v01.py --threads 1 --repeats "$n" --json "$out/vs-nanovlm-v01.json"
  $one $py experiments/vs_nanovlm_v01.py --threads 1 --compile --skip-generate --repeats "$n" \
      --json "$out/vs-nanovlm-v01-compiled.json"
fi
$one $py experiments/train_step_mfu.py --preset tiny --compile --profile --repeats "$n" --json "$out/tiny-mfu.json"
uptime | tee "$out/load-after.txt"
