#!/usr/bin/env bash
# The main job's figures: default `nanovlm-train` (the tiny recipe), timed, for seeds 0, 1 and 2, one after the
# other, then the accuracy table of each run. Run it from a checkout installed the README's way, on a machine
# with nothing else running:  bash experiments/main_job.sh [seeds...]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${*:-0 1 2}
for s in $seeds; do
  out=runs/main-seed$s
  start=$(date +%s.%N)
  .venv/bin/nanovlm-train --seed "$s" --output-dir "$out" --overwrite --quiet | tee "$out.log"
  end=$(date +%s.%N)
  python3 -c "print(f'seed $s: nanovlm-train took {$end - $start:.0f} s wall')" | tee -a "$out.log"
done
.venv/bin/python experiments/summarize.py $(for s in $seeds; do echo runs/main-seed$s; done)
