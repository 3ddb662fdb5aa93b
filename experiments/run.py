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
ap.add_argument('--orders', help="description orders the describe items cycle through: reading (position), color "
                "(each colour's shape, colours in a fixed order), kind (each kind's colour); e.g. reading,color,kind")
ap.add_argument('--betas', help="AdamW's (beta1, beta2), e.g. 0.9,0.95 (default PyTorch's 0.9,0.999)")
ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE', help='change a field of the preset')
ap.add_argument('--preset', default='tiny', help='the preset --set changes (default tiny)')
ap.add_argument('train_args', nargs=argparse.REMAINDER, help='-- then the nanovlm-train options')
a = ap.parse_args()
if a.describe is not None: T.SHAPES_DESCRIBE = a.describe
if a.qtypes:
    class _Mix(T.ShapesVQA):  # the training set's mix; `heldout` passes its own qtypes, so evaluation is unchanged
        def __init__(self, *args, **kw): super().__init__(*args, **{'qtypes': tuple(a.qtypes.split(',')), **kw})
    T.ShapesVQA = _Mix
ORDER_Q = {'color': 'What shape is each color?', 'kind': 'What color is each shape?'}
if a.orders:
    import numpy as np
    import nanovlm.data as D
    orders = a.orders.split(',')
    def _describe(shapes, order):
        if order == 'color': return ' '.join(f'{c} {k}' for c in D.SHAPE_COLORS for k, c2, *_ in shapes if c2 == c)
        return ' '.join(f'{k} {c}' for k in D.SHAPE_KINDS for k2, c, *_ in shapes if k2 == k)
    _scene = T.ShapesVQA.scene
    def scene(self, i):
        shapes, q, ans, qt = _scene(self, i)
        if qt != 'describe': return shapes, q, ans, qt
        order = orders[int(np.random.default_rng([self.seed, 7, int(i)]).integers(len(orders)))]
        return (shapes, q, ans, qt) if order == 'reading' else (shapes, ORDER_Q[order], _describe(shapes, order), qt)
    T.ShapesVQA.scene = scene
    _corpus = D.shapes_corpus
    def corpus(): return _corpus() + [D.format_prompt(q) for q in ORDER_Q.values()]
    T.shapes_tokenizer = lambda vocab_size=256: D.train_tokenizer(corpus(), vocab_size=vocab_size, kind='wordlevel')
if a.betas:
    _make = T.make_optimizer
    def _with_betas(model, tc):
        opt = _make(model, tc)
        for g in opt.param_groups: g['betas'] = tuple(float(b) for b in a.betas.split(','))
        return opt
    T.make_optimizer = _with_betas
for kv in a.set:
    k, v = kv.split('=', 1)
    try: v = ast.literal_eval(v)
    except (ValueError, SyntaxError): pass
    C.PRESETS[a.preset] = {**C.PRESETS[a.preset], k: v}
args = a.train_args[1:] if a.train_args[:1] == ['--'] else a.train_args
sys.exit(T.train_cli(args))
