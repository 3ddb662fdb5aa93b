"""Side by side with nanoVLM v0.1 on this machine, each as it ships: the 222M shape with random weights, one process.

    NANOVLM_REF=<folder holding nanoVLM v0.1's models/*.py> python experiments/vs_nanovlm_v01.py \\
        [--threads 1] [--precision auto] [--compile] [--json out.json]

A copy of ../shared/tools/vs_nanovlm_v01.py (same shapes: a training step of batch 4, 49 image + 79 text tokens, the
optimizer step included; 128 new tokens at batch 1 after a 32-token prompt), with nanovlm run the way its commands
run it rather than in fp32 with a plain AdamW:

- training: `--precision` as `nanovlm-train` resolves it (auto: bf16 autocast on a CPU with native bf16), chapter
  7's optimizer (`make_optimizer`: fused AdamW), and glibc's malloc told to keep freed memory (`keep_freed_memory`,
  which `nanovlm-train` calls). nanoVLM v0.1 runs as its train.py does: fp32 (its only CPU mode), `optim.AdamW`, and
  the allocator as it comes. The allocator setting is process-wide, so v0.1 is timed first, and then once more after
  it, to show how much of the gap is the allocator alone (`train, same allocator`); that second time, the two
  models' steps alternate one by one, and the ratio of each pair is kept (`cpu_per_repeat`, its min and max).
- generation: weights in `--precision` (what `nanovlm-generate --precision auto` loads), KV cache; v0.1's generate.
- `--compile`: nanovlm's training step through `torch.compile` (`nanovlm-train --compile`); the compilation falls in
  the untimed first step, whose wall time is reported as `first_call_wall_s`.

Reports the median wall time of each and the process CPU time (user + system, all threads), which a busy machine
inflates far less than the wall time; the ratios are given for both. Pin it to one core (`taskset -c 1`) for a
steadier figure. `--precision fp32` shows what the other changes are worth without bf16.
"""
import argparse, copy, json, os, platform, statistics, sys, time
from datetime import date
import torch

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--repeats', type=int, default=3, help='timed training steps and nanovlm generations (default 3)')
ap.add_argument('--precision', choices=['auto', 'fp32', 'bf16'], default='auto', help="nanovlm's precision (default auto)")
ap.add_argument('--compile', action='store_true', help="torch.compile nanovlm's model for training (nanovlm-train --compile);"
                " the compilation happens in the untimed first step and is reported apart")
ap.add_argument('--skip-generate', action='store_true')
ap.add_argument('--json', help='also write the results as JSON here')
args = ap.parse_args()
torch.set_num_threads(args.threads)
ref = os.environ.get('NANOVLM_REF')
if not ref or not os.path.isfile(os.path.join(ref, 'models', 'vision_language_model.py')):
    sys.exit('set NANOVLM_REF to a folder holding nanoVLM v0.1 models/*.py')
sys.path.insert(0, ref)
from models.config import VLMConfig as RefConfig
from models.vision_language_model import VisionLanguageModel as RefVLM
sys.path.remove(ref)
for name in [m for m in sys.modules if m == 'models' or m.startswith('models.')]: del sys.modules[name]
from nanovlm.config import VLMConfig, TrainConfig
from nanovlm.vision_language_model import VisionLanguageModel
from nanovlm.training import make_optimizer, precision_context, resolve_precision, keep_freed_memory

precision = resolve_precision('cpu', args.precision)
loadavg_start = list(os.getloadavg())

def _cpu_name() -> str:
    "The CPU's model name (/proc/cpuinfo), else what platform says."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def cpu_s() -> float:
    t = os.times()
    return t.user + t.system

def timed(fn, repeats:int) -> dict:
    "One untimed call, then `repeats` timed ones: median wall and CPU seconds (and the first call's wall seconds)."
    w = time.perf_counter()
    fn()
    first = time.perf_counter() - w
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), cpu_s()
        fn()
        wall.append(time.perf_counter() - w); cpu.append(cpu_s() - c)
    return {'wall_s': statistics.median(wall), 'cpu_s': statistics.median(cpu), 'wall_all': wall, 'cpu_all': cpu,
            'first_call_wall_s': first}

torch.manual_seed(0)
theirs = RefVLM(RefConfig(vlm_load_backbone_weights=False), load_backbone=False)
ours = VisionLanguageModel(VLMConfig(vlm_load_backbone_weights=False), load_backbone=False)
ids = torch.randint(1, 49152, (4, 79))
img = torch.rand(4, 3, 224, 224)
tgt = ids.clone()
tgt[:, :40] = -100
res = {}

def train_step_fn(name:str, model):
    if name == 'nanoVLM v0.1':
        opt, ctx = torch.optim.AdamW(model.parameters(), lr=1e-5), lambda: torch.autocast('cpu', enabled=False)
    else:
        opt, ctx = make_optimizer(model, TrainConfig(lr_mp=1e-5, lr_backbones=1e-5)), lambda: precision_context('cpu', precision)
    fwd = torch.compile(model) if args.compile and name == 'nanovlm' else model
    def step():
        with ctx():
            _, loss = fwd(ids, img, targets=tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step

theirs.train(); ours.train()
res['nanoVLM v0.1', 'train'] = timed(train_step_fn('nanoVLM v0.1', theirs), args.repeats)  # the allocator as it comes
keep_freed_memory()  # what nanovlm-train does before it trains
steps = {'nanovlm': train_step_fn('nanovlm', ours), 'nanoVLM v0.1': train_step_fn('nanoVLM v0.1', theirs)}
first = {}
for name, fn in steps.items():  # untimed (nanovlm's compilation, with --compile, happens here)
    w = time.perf_counter()
    fn()
    first[name] = time.perf_counter() - w
alternated = {name: [] for name in steps}  # one step each, in turn: a slow phase of the machine hits both
for _ in range(args.repeats):
    for name, fn in steps.items():
        w, c = time.perf_counter(), cpu_s()
        fn()
        alternated[name].append((time.perf_counter() - w, cpu_s() - c))
for name, key in (('nanovlm', 'train'), ('nanoVLM v0.1', 'train, same allocator')):
    wall, cpu = [w for w, _ in alternated[name]], [c for _, c in alternated[name]]
    res[name, key] = {'wall_s': statistics.median(wall), 'cpu_s': statistics.median(cpu), 'wall_all': wall,
                      'cpu_all': cpu, 'first_call_wall_s': first[name]}
per_repeat = [t[1] / o[1] for t, o in zip(alternated['nanoVLM v0.1'], alternated['nanovlm'])]
if not args.skip_generate:
    prompt, im = torch.randint(1, 49152, (1, 32)), torch.rand(1, 3, 224, 224)
    theirs.eval(); ours.eval()
    fast = copy.deepcopy(ours).to(torch.bfloat16) if precision == 'bf16' else ours  # as load_for_inference loads it
    with torch.no_grad():
        res['nanoVLM v0.1', 'generate'] = timed(lambda: theirs.generate(prompt, im, max_new_tokens=128), 1)
        res['nanovlm', 'generate'] = timed(lambda: fast.generate(prompt, im, max_new_tokens=128, greedy=True,
                                                                 eos_token_id=-1), args.repeats)

print(f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}, "
      f"{date.today().isoformat()}; nanovlm precision: {precision}{', compiled' if args.compile else ''}")
print('| measure | nanoVLM v0.1 wall / CPU s | nanovlm wall / CPU s | ratio (wall) | ratio (CPU) |\n|---|---|---|---|---|')
ratios = {}
for what, theirs_key in (('train', 'train'), ('train, same allocator', 'train, same allocator'), ('generate', 'generate')):
    if ('nanoVLM v0.1', theirs_key) not in res: continue
    a, b = res['nanoVLM v0.1', theirs_key], res['nanovlm', what.split(',')[0]]
    ratios[what] = {'wall': a['wall_s'] / b['wall_s'], 'cpu': a['cpu_s'] / b['cpu_s']}
    if what == 'train, same allocator':  # alternated step by step: the spread of the ratio, repeat by repeat
        ratios[what].update(cpu_per_repeat=per_repeat, cpu_min=min(per_repeat), cpu_max=max(per_repeat))
    print(f"| {what} | {a['wall_s']:.2f} / {a['cpu_s']:.2f} | {b['wall_s']:.2f} / {b['cpu_s']:.2f} | "
          f"{ratios[what]['wall']:.2f}x | {ratios[what]['cpu']:.2f}x |")
if args.json:
    with open(args.json, 'w') as f:
        json.dump({'date': date.today().isoformat(), 'torch': torch.__version__, 'threads': args.threads,
                   'cpu': _cpu_name(), 'loadavg_end': list(os.getloadavg()), 'loadavg_start': loadavg_start,
                   'precision': precision, 'compiled': args.compile, 'machine': platform.processor() or platform.machine(),
                   'results': {f'{k[0]} | {k[1]}': v for k, v in res.items()}, 'ratios': ratios}, f, indent=1)
