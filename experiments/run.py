"""One ShapesVQA training experiment: `nanovlm-train` with knobs the command does not expose.

    python experiments/run.py --describe 0.3 --set mp_pixel_shuffle_factor=4 -- --steps 3000 --schedule wsd \\
        --eval-every 250 --output-dir runs/exp/x

Everything after `--` goes to `nanovlm-train` unchanged. The options before it change, for this process only,
ShapesVQA's training mix (`--describe`, `--qtypes`) and fields of the model preset (`--set field=value`).
`experiments/summarize.py` tabulates the runs' metrics.jsonl files.
"""
import argparse, ast, sys
import nanovlm.config as C
import nanovlm.training as T

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--describe', type=float, help='fraction of training items that describe the whole scene')
ap.add_argument('--qtypes', help='comma-separated question types the training items cycle through, e.g. '
                'color,shape,count,exists,side,shape (repeats weigh a type more)')
ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE', help='change a field of the preset')
ap.add_argument('--preset', default='tiny', help='the preset --set changes (default tiny)')
ap.add_argument('train_args', nargs=argparse.REMAINDER, help='-- then the nanovlm-train options')
a = ap.parse_args()
if a.describe is not None: T.SHAPES_DESCRIBE = a.describe
if a.qtypes:
    class _Mix(T.ShapesVQA):  # the training set's mix; `heldout` passes its own qtypes, so evaluation is unchanged
        def __init__(self, *args, **kw): super().__init__(*args, **{'qtypes': tuple(a.qtypes.split(',')), **kw})
    T.ShapesVQA = _Mix
for kv in a.set:
    k, v = kv.split('=', 1)
    try: v = ast.literal_eval(v)
    except (ValueError, SyntaxError): pass
    C.PRESETS[a.preset] = {**C.PRESETS[a.preset], k: v}
args = a.train_args[1:] if a.train_args[:1] == ['--'] else a.train_args
sys.exit(T.train_cli(args))
