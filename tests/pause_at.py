"""Hold a `nanovlm-train` run at an exact point, so that a test can send it a real signal there, kept out of the
library: `python tests/pause_at.py WHERE N MARKER [nanovlm-train options]`.

WHERE is `step` (inside step N: its batch is read, its update not made) or `save` (inside the checkpoint of step N:
the model is in the staging directory, the optimizer state is not). There it writes its pid into the file MARKER
and sleeps until a signal's handler ends the sleep. WHERE `lock` (N is ignored) waits just before the run takes
its directory's lock, until the file MARKER.go exists: processes released together reach the lock together.
"""
import os, sys, time
from pathlib import Path
import nanovlm.training as T
import nanovlm.runs as R
import nanovlm.train_cli as CLI
from nanovlm.train_cli import train_cli


def _pause(marker):
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)  # a signal's handler raises here
    sys.exit('pause_at: no signal came')


def _at_step(n, marker):
    real, calls = T.accumulate_gradients, [0]
    def accumulate_gradients(*a, **k):
        calls[0] += 1
        if calls[0] == n: _pause(marker)
        return real(*a, **k)
    T.accumulate_gradients = accumulate_gradients


def _at_save(n, marker):
    real_checkpoint, real_save, armed = R.save_checkpoint, R.save_file, [False]
    def save_checkpoint(out, model, opt, tc, state, *a, **k):
        armed[0] = state['step'] == n
        return real_checkpoint(out, model, opt, tc, state, *a, **k)
    def save_file(*a, **k):
        if armed[0]: _pause(marker)
        return real_save(*a, **k)
    R.save_checkpoint, R.save_file = save_checkpoint, save_file


def _at_lock(n, marker):
    real = CLI.hold_run_dir
    def hold_run_dir(out):
        Path(marker).write_text(str(os.getpid()))
        while not Path(f'{marker}.go').exists(): time.sleep(0.001)
        return real(out)
    CLI.hold_run_dir = hold_run_dir


if __name__ == '__main__':
    where, n, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {'step': _at_step, 'save': _at_save, 'lock': _at_lock}[where](n, marker)
    sys.exit(train_cli(sys.argv[4:]))
