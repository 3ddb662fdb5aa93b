#!/usr/bin/env bash
# bf16 against fp32 accuracy: the default recipe (`--precision auto`, bf16 autocast on a CPU with native bf16
# matmul) and the same recipe in fp32, same steps, seeds 0, 1 and 2. Each fp32 run takes about 25 minutes on
# one core of a 2-core AMD EPYC; runs go two at a time, one thread each, pinned to a core.
#   bash experiments/precision_seeds.sh [seeds...]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${*:-0 1 2}
run() {  # run PRECISION SEED CORE
  out=runs/$1-seed$2
  taskset -c "$3" .venv/bin/nanovlm-train --precision "$1" --threads 1 --seed "$2" --output-dir "$out" \
    --overwrite --quiet > "$out.log" 2>&1
}
for s in $seeds; do
  run bf16 "$s" 0 &
  run fp32 "$s" 1
  wait
done
.venv/bin/python experiments/summarize.py $(for s in $seeds; do echo runs/bf16-seed$s runs/fp32-seed$s; done)
