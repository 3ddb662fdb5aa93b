"""Fault injection for tests, kept out of the library: `python tests/kill_after.py N [nanovlm-train options]` runs
`nanovlm-train` and SIGKILLs it (no cleanup, no `finally`) once step N has finished, its checkpoint included."""
import os, signal, sys
import nanovlm.training as T
from nanovlm.train_cli import train_cli

_real_step_batches = T.step_batches


def _step_batches_then_die(n):
    def step_batches(*args, **kwargs):
        for i, batch in enumerate(_real_step_batches(*args, **kwargs)):
            if i == n: os.kill(os.getpid(), signal.SIGKILL)  # asked for the batch of step n + 1: step n is done
            yield batch
    return step_batches


if __name__ == '__main__':
    T.step_batches = _step_batches_then_die(int(sys.argv[1]))
    sys.exit(train_cli(sys.argv[2:]))
