#!/bin/sh
# One experiment in the background, one thread, its output in runs/easyvqa/logs/NAME.log:
#   [STOP=N] sh experiments/easyvqa/launch.sh NAME [exp.py options]   (STOP: end after step N, saving the model there)
name=$1; shift
mkdir -p runs/easyvqa/logs
OMP_NUM_THREADS=1 nohup timeout 14400 .venv/bin/python experiments/easyvqa/exp.py --name "$name" --threads 1 \
  --tc save_every=0 "$@" $([ -n "$STOP" ] && echo --stop-after $STOP --tc save_every=$STOP) > "runs/easyvqa/logs/$name.log" 2>&1 &
echo $! > "runs/easyvqa/logs/$name.pid"
