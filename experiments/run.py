"""One ShapesVQA training experiment: `nanovlm-train` with knobs the command does not expose.

    python experiments/run.py --orders reading --set mp_pixel_shuffle_factor=4 -- --steps 3000 --eval-every 250 \\
        --output-dir runs/exp/x

Everything after `--` goes to `nanovlm-train` unchanged. The options before it change, for this process only,
ShapesVQA's training mix (`--describe`, `--orders`, `--qtypes`), the pixel range (`--pixels01`), AdamW's betas,
and fields of the model preset (`--set field=value`). `experiments/summarize.py` tabulates the runs' metrics.jsonl files; README.md beside
this file lists the experiments run so far and what they found.
"""
import argparse, ast, sys
import nanovlm.config as C
import nanovlm.training as T
import nanovlm.train_cli as CLI

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--describe', type=float, help='fraction of training items that describe the whole scene')
ap.add_argument('--orders', help="description orders, comma-separated: reading, color, kind (chapter 6)")
ap.add_argument('--qtypes', help='comma-separated question types the training items cycle through, e.g. '
                'color,shape,count,exists,side,shape (repeats weigh a type more)')
ap.add_argument('--exists-max-shapes', type=int, help="training only: 'Is there a ...?' scenes have at most this many "
                "shapes (3 removes the shortcut that a scene of 4 always answers yes)")
ap.add_argument('--pixels01', action='store_true', help="feed pixels in [0, 1] (nanoVLM v0.1's) instead of "
                "the library's [-1, 1] (chapter 6, 'Pixels in [-1, 1]')")
ap.add_argument('--betas', help="AdamW's (beta1, beta2), e.g. 0.9,0.95 (default PyTorch's 0.9,0.999)")
ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE', help='change a field of the preset')
ap.add_argument('--preset', default='tiny', help='the preset --set changes (default tiny)')
ap.add_argument('train_args', nargs=argparse.REMAINDER, help='-- then the nanovlm-train options')
a = ap.parse_args()
if a.describe is not None: CLI.SHAPES_DESCRIBE = a.describe
if a.orders: CLI.SHAPES_DESCRIBE_ORDERS = tuple(a.orders.split(','))
if a.qtypes:
    class _Mix(CLI.ShapesVQA):  # the training set's mix; `heldout` passes its own qtypes, so evaluation is unchanged
        def __init__(self, *args, **kw): super().__init__(*args, **{'qtypes': tuple(a.qtypes.split(',')), **kw})
    CLI.ShapesVQA = _Mix
if a.exists_max_shapes:
    import nanovlm.data as D
    _sample, _scene = D._sample_question, CLI.ShapesVQA.scene
    def _sample_train(rng, qtype, *args, **kw):
        while True:  # redraw from the same stream: deterministic
            shapes, q, ans = _sample(rng, qtype, *args, **kw)
            if qtype != 'exists' or len(shapes) <= a.exists_max_shapes: return shapes, q, ans
    def scene(self, i):
        if self.split != 'train': return _scene(self, i)
        D._sample_question = _sample_train
        try: return _scene(self, i)
        finally: D._sample_question = _sample
    CLI.ShapesVQA.scene = scene
if a.pixels01:
    import nanovlm.data as D
    CLI.image_processor_for = lambda cfg: D.get_image_processor(cfg.vit_img_size)  # no normalisation
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
sys.exit(CLI.train_cli(args))
