"""A training step against the bf16 matmul peak, measured side by side in one process; where its time goes.

    OMP_NUM_THREADS=1 taskset -c 1 python experiments/train_step_mfu.py [--preset tiny] [--batch-size 64]
        [--repeats 5] [--compile] [--profile] [--json PATH]

Alternates, `--repeats` times: the bf16 matmul peak (an n x n product, n = 2048, as chapter 9's
`matmul_peak`), the eager bf16 training step (autocast, chapter 7's fused AdamW, freed memory kept, as
`nanovlm-train` runs it) and, with `--compile`, the same step through `torch.compile` (compiled in an untimed
first call). MFU is each step's model FLOPs per second (chapter 9's `train_flops_per_step`) over the peak
measured in the same repeat, from this thread's CPU time (a shared machine inflates wall time far more).
`--profile` adds a per-op profile of one eager step: self CPU time per op, grouped into matrix products,
copies and casts, the optimizer and the rest.
"""
import argparse, os, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_common import default_json, machine, one_thread, spread, timed, write_json, git_rev
from nanovlm.config import get_preset, TrainConfig
from nanovlm.vision_language_model import VisionLanguageModel
from nanovlm.training import make_optimizer, precision_context, keep_freed_memory
from nanovlm.benchmarks import random_batch, train_flops_per_step

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--preset', default='tiny')
ap.add_argument('--batch-size', type=int, default=None, help='default: 64 for tiny, 4 for nanovlm-222m')
ap.add_argument('--repeats', type=int, default=5)
ap.add_argument('--compile', action='store_true')
ap.add_argument('--profile', action='store_true')
ap.add_argument('--json', default=None)
args = ap.parse_args()
one_thread()
keep_freed_memory()
cfg = get_preset(args.preset)
B = args.batch_size or (64 if args.preset == 'tiny' else 4)
T = cfg.lm_max_length
ids, img, tgt = random_batch(cfg, B, T)
flops = train_flops_per_step(cfg, T, B)


def step_fn(compiled:bool):
    torch.manual_seed(0)
    model = VisionLanguageModel(cfg).train()
    opt = make_optimizer(model, TrainConfig())
    fwd = torch.compile(model) if compiled else model
    def step():
        with precision_context('cpu', 'bf16'):
            _, loss = fwd(ids, img, targets=tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


n = 2048
a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
runs = {'peak': lambda: a @ b, 'eager': step_fn(False)}
if args.compile: runs['compiled'] = step_fn(True)
first = {}
for k, f in runs.items():
    w, _, _ = timed(f)
    first[k] = w
times = {k: [] for k in runs}
for r in range(args.repeats):
    for k, f in runs.items(): times[k].append(timed(f)[:2])
    done = ', '.join(f'{k} {t[-1][1]:.3f} CPU s' for k, t in times.items())
    print(f'repeat {r + 1}/{args.repeats}: {done}', flush=True)

peak = [2 * n**3 / c for _, c in times['peak']]
res = {'flops_per_step': flops, 'peak_flops_cpu': spread(peak), 'first_call_wall_s': first}
for k in runs:
    if k == 'peak': continue
    res[k] = {'step_cpu_s': spread([c for _, c in times[k]]), 'step_wall_s': spread([w for w, _ in times[k]]),
              'mfu_cpu': spread([flops / c / p for (_, c), p in zip(times[k], peak)])}
info = {**machine(), 'nanovlm_rev': git_rev(), 'preset': args.preset, 'batch_size': B, 'text_len': T,
        'repeats': args.repeats}
print(f"\n{info['cpu']}, 1 thread, torch {info['torch']}, {info['date']}, load average "
      f"{info['loadavg'][0]:.1f}; {args.preset}, batch {B}, bf16 autocast; median (min-max) of "
      f"{args.repeats} alternated repeats, CPU time")
print(f"bf16 matmul peak: {res['peak_flops_cpu']['median'] / 1e9:.0f} GFLOP/s "
      f"({res['peak_flops_cpu']['min'] / 1e9:.0f}-{res['peak_flops_cpu']['max'] / 1e9:.0f})")
for k in runs:
    if k == 'peak': continue
    s, m = res[k]['step_cpu_s'], res[k]['mfu_cpu']
    print(f"{k}: {s['median']:.3f} s per step ({s['min']:.3f}-{s['max']:.3f}), {m['median']:.1%} of the peak "
          f"({m['min']:.1%}-{m['max']:.1%})")

if args.profile:
    from torch.profiler import profile, ProfilerActivity
    groups = {'matrix products': ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::_scaled_dot_product'),
              'copies and casts': ('aten::copy_', 'aten::_to_copy', 'aten::fill_', 'aten::zero_',
                                   'aten::cat'),
              'optimizer': ('aten::_fused_adamw_', 'aten::_foreach')}
    step = runs['eager']
    with profile(activities=[ProfilerActivity.CPU]) as p: step()
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6, e.count) for e in p.key_averages()),
                 key=lambda x: -x[1])
    total = sum(t for _, t, _ in ops)
    share = {g: sum(t for k, t, _ in ops if k.startswith(pre)) / total for g, pre in groups.items()}
    share['everything else'] = 1 - sum(share.values())
    top = [dict(op=k, self_s=t, calls=c) for k, t, c in ops[:25]]
    res['profile'] = {'self_cpu_share': share, 'top_ops': top}
    print('\none eager step, self CPU time by kind (the profiler counts wall time: shares, not seconds):')
    for g, s in share.items(): print(f'  {g}: {s:.1%}')
    print('top ops: ' + ', '.join(f'{k} {t / total:.1%}' for k, t, _ in ops[:10]))
info['end_loadavg'] = list(os.getloadavg())
path = write_json({**info, 'results': res}, args.json or default_json(f'train-step-mfu-{args.preset}'))
print(f'wrote {path}')
