"""Chapter 10's runs from the shell: train the tiny SplitVLM on LargeShapesVQA (with or without splitting) or
on TwoShapesVQA, and print the held-out accuracy per question type beside the question-only baseline.

    python experiments/seeing_more.py --task large --max-img 128 --steps 300 --out /tmp/large_split
    python experiments/seeing_more.py --task large --max-img 64 --steps 300 --out /tmp/large_squeezed
    python experiments/seeing_more.py --task two --max-img 64 --steps 300 --out /tmp/two

The chapter (nbs/10_seeing_more.ipynb) runs the same function, `run_task`, for its table.
"""
import argparse, json, time
import torch
from nanovlm.seeing_more import run_task, question_only_accuracy

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--task', choices=['large', 'two'], default='large')
    ap.add_argument('--max-img', type=int, default=128, help='64: no splitting')
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--eval-every', type=int, default=50)
    ap.add_argument('--eval-samples', type=int, default=200)
    ap.add_argument('--scale', type=int, default=2)
    ap.add_argument('--shape-size', type=float, default=0.4)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    res = run_task(a.task, a.max_img, a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                   eval_interval=a.eval_every, eval_samples=a.eval_samples, scale=a.scale,
                   shape_size=a.shape_size, seed=a.seed)
    print(json.dumps({'args': vars(a), 'wall_s': round(time.time() - t0, 1), **res}, indent=1))
