#!/bin/sh
# One experiment in the background, one thread, its output in runs/easyvqa/logs/NAME.log:
#   sh experiments/easyvqa/launch.sh NAME [exp.py options]
name=$1; shift
mkdir -p runs/easyvqa/logs
OMP_NUM_THREADS=1 nohup timeout 14400 .venv/bin/python experiments/easyvqa/exp.py --name "$name" --threads 1 \
  --tc save_every=0 "$@" > "runs/easyvqa/logs/$name.log" 2>&1 &
echo $! > "runs/easyvqa/logs/$name.pid"
