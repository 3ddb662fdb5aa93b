"""Chapter 10's runs from the shell: train the tiny SplitVLM on LargeShapesVQA (with or without splitting) or
on TwoShapesVQA; save the metrics, the final held-out accuracy per question type and the question-only
baseline to experiments/results/seeing_more/<name>.json, which the chapter's table reads.

    python experiments/seeing_more.py --name large_squeezed --task large --max-img 64
    python experiments/seeing_more.py --name large_split --task large --max-img 128
    python experiments/seeing_more.py --name two_images --task two --max-img 64

(the other settings as recorded in each results file's `args`).
"""
import argparse, datetime, json, os, platform, tempfile, time
from pathlib import Path
import torch
from nanovlm.seeing_more import run_task, question_only_accuracy

RESULTS = Path(__file__).parent / 'results' / 'seeing_more'

def _cpu() -> str:
    "The CPU's model name (Linux), else the platform's."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--name', required=True, help='results file name')
    ap.add_argument('--task', choices=['large', 'two'], default='large')
    ap.add_argument('--max-img', type=int, default=128, help='64: no splitting')
    ap.add_argument('--steps', type=int, default=600)
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--eval-every', type=int, default=100)
    ap.add_argument('--eval-samples', type=int, default=200)
    ap.add_argument('--scale', type=int, default=2)
    ap.add_argument('--shape-size', type=float, default=2.0)
    ap.add_argument('--qtypes', default='color,stripes', help="LargeShapesVQA's questions: color, stripes, shape")
    ap.add_argument('--solid', action='store_true', help='solid shapes (no stripes): the pilots')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', help='run directory (default: a temporary one)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = a.out or tempfile.mkdtemp()
    t0 = time.time()
    large = dict(qtypes=tuple(a.qtypes.split(',')), hatched=not a.solid) if a.task == 'large' else {}
    res = run_task(a.task, a.max_img, out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                   eval_interval=a.eval_every, eval_samples=a.eval_samples, scale=a.scale,
                   shape_size=a.shape_size, seed=a.seed, **large)
    base = question_only_accuracy(a.task, n_eval=a.eval_samples, seed=a.seed, scale=a.scale, shape_size=a.shape_size,
                                  **large)
    rec = {'args': {k: v for k, v in vars(a).items() if k != 'out'}, 'date': datetime.date.today().isoformat(),
           'cpu': _cpu(), 'threads': a.threads, 'load_average_at_end': os.getloadavg()[0],
           'wall_s': round(time.time() - t0, 1), 'train_wall_s': res['train_wall_s'], 'final': res['final'],
           'question_only': base, 'history': res['history']}
    (RESULTS / a.name).parent.mkdir(parents=True, exist_ok=True)
    (RESULTS / f'{a.name}.json').write_text(json.dumps(rec, indent=1) + '\n')
    print(json.dumps({k: v for k, v in rec.items() if k != 'history'}, indent=1))
