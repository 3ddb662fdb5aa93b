"""Where a 222M training step's time goes on a CPU, and what each change of issue 15 took off it.

    python experiments/step_breakdown.py [--threads 1] [--preset nanovlm-222m] [--batch-size 4] [--json out.json]

Times forward, backward and optimizer step separately (process CPU time, which a busy machine inflates far less
than wall time; wall time too), with the minor page faults of each step, for these variants in this order:

1. fp32, `torch.optim.AdamW` as it comes (a loop of a dozen elementwise passes per tensor), glibc's malloc as it comes;
2. bf16 autocast, the same optimizer and allocator;
3. bf16 autocast, fused AdamW (`make_optimizer`, chapter 7);
4. bf16 autocast, fused AdamW, `keep_freed_memory()` (no page faults: freed blocks are reused);
5. fp32, fused AdamW, `keep_freed_memory()`.

The allocator setting cannot be undone in a process, so the variants run in this order.
"""
import argparse, json, os, resource, statistics, time
from datetime import date
import torch
from nanovlm.config import get_preset, TrainConfig
from nanovlm.vision_language_model import VisionLanguageModel
from nanovlm.training import make_optimizer, keep_freed_memory
from nanovlm.benchmarks import random_batch, train_flops_per_step, matmul_peak

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--preset', default='nanovlm-222m')
ap.add_argument('--batch-size', type=int, default=4)
ap.add_argument('--repeats', type=int, default=3)
ap.add_argument('--json')
args = ap.parse_args()
torch.set_num_threads(args.threads)
cfg = get_preset(args.preset)
T = cfg.lm_max_length
batch = random_batch(cfg, args.batch_size, T)
cpu = lambda: sum(os.times()[:2])
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def measure(bf16:bool, fused:bool) -> dict:
    torch.manual_seed(0)
    model = VisionLanguageModel(cfg).train()
    opt = (make_optimizer(model, TrainConfig(lr_mp=1e-4, lr_backbones=1e-4)) if fused
           else torch.optim.AdamW(model.parameters(), lr=1e-4))
    ids, img, tgt = batch
    rows = []
    for i in range(1 + args.repeats):
        f0, w0, c0 = faults(), time.perf_counter(), cpu()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(ids, img, targets=tgt)
        c1 = cpu()
        loss.backward()
        c2 = cpu()
        opt.step()
        opt.zero_grad(set_to_none=True)
        c3 = cpu()
        if i: rows.append({'forward': c1 - c0, 'backward': c2 - c1, 'optimizer': c3 - c2, 'step': c3 - c0,
                           'wall': time.perf_counter() - w0, 'page_faults': faults() - f0})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}

variants = [('fp32, AdamW as it comes, malloc as it comes', False, False, False),
            ('bf16 autocast, AdamW as it comes, malloc as it comes', True, False, False),
            ('bf16 autocast, fused AdamW, malloc as it comes', True, True, False),
            ('bf16 autocast, fused AdamW, keep_freed_memory', True, True, True),
            ('fp32, fused AdamW, keep_freed_memory', False, True, True)]
flops = train_flops_per_step(cfg, T, args.batch_size)
out = []
for name, bf16, fused, keep in variants:
    if keep: keep_freed_memory()
    r = measure(bf16, fused)
    out.append({'variant': name, **r})
peaks = {k: matmul_peak('cpu', dt)['flops'] for k, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16))}
print(f"{args.preset}, batch {args.batch_size} x {cfg.n_image_tokens}+{T} tokens, {args.threads} thread(s), "
      f"torch {torch.__version__}, {date.today().isoformat()}; {flops / 1e9:.0f} GFLOP per step; matmul peaks (wall): "
      f"fp32 {peaks['fp32'] / 1e9:.0f}, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
print('| variant | forward | backward | optimizer | step (CPU s) | step (wall s) | page faults |\n|---|---|---|---|---|---|---|')
for r in out:
    print(f"| {r['variant']} | {r['forward']:.2f} | {r['backward']:.2f} | {r['optimizer']:.2f} | {r['step']:.2f} | "
          f"{r['wall']:.2f} | {r['page_faults']:,.0f} |")
if args.json:
    with open(args.json, 'w') as f:
        json.dump({'date': date.today().isoformat(), 'torch': torch.__version__, 'threads': args.threads,
                   'preset': args.preset, 'batch_size': args.batch_size, 'flops_per_step': flops,
                   'matmul_peak_flops': peaks, 'variants': out}, f, indent=1)
