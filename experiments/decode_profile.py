"""Where one decode step of SmolLM2-135M goes, op by op: torch.profiler on the eager and the compiled step.

    OMP_NUM_THREADS=1 taskset -c 1 python experiments/decode_profile.py [--steps 32]
        [--variants before,eager,compile] [--json PATH]

Profiles `--steps` decode steps (bf16, batch 1, one thread, after a 32-token prompt) of each variant:
`before` (the forward pass with the growing cache, as the library decoded before issue 28), `eager`
(chapter 4's `decode_step`) and `compile` (the same step through `torch.compile`, with inductor's kernel
profiling on, so its generated C++ kernels are listed by name). Prints, per step, the self CPU time of the
top ops and their share: the profiler measures wall time, so on a shared machine read the shares, not the
milliseconds. `aten::mm` is the matrix-vector products (one per weight matrix), the part bound by memory.
"""
import argparse, os, sys
from pathlib import Path
import torch
import torch._inductor.config as inductor_config
sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_common import (LLAMACPP_DIR, PROMPT_LEN, default_json, load_smollm2, machine, one_thread,
                           prompt_ids, write_json, git_rev)
from nanovlm.gguf import smollm2_gguf
from nanovlm.language_model import decode_step, _one_row_kernels, _compiled_decode_step
from torch.profiler import profile, ProfilerActivity

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--steps', type=int, default=32)
ap.add_argument('--variants', default='before,eager,compile')
ap.add_argument('--top', type=int, default=15)
ap.add_argument('--json', default=None)
args = ap.parse_args()
one_thread()
inductor_config.cpp.enable_kernel_profile = True  # the compiled step's own kernels appear by name
bf16_file = LLAMACPP_DIR / 'SmolLM2-135M-Instruct.BF16.gguf'
lm = load_smollm2(bf16_file if bf16_file.is_file() else smollm2_gguf(), torch.bfloat16)
ids = prompt_ids(lm.cfg.lm_vocab_size)
probe = torch.zeros(1, 1, 1, dtype=torch.bfloat16)
n = args.steps


def runner(variant:str):
    "`n` decode steps of `variant`, from a freshly prefilled cache each time."
    mask = torch.ones(1, PROMPT_LEN + n, dtype=torch.long)
    def run():
        cache = lm.init_cache(1, PROMPT_LEN + n)
        lm(ids, mask[:, :PROMPT_LEN], cache)
        if variant != 'before': cache.start_decoding(mask[:, :PROMPT_LEN])
        step = _compiled_decode_step() if variant == 'compile' else decode_step
        for t in range(n):
            with _one_row_kernels(probe):
                if variant == 'before': lm(ids[:, -1:], mask[:, :PROMPT_LEN + t + 1], cache)
                else:
                    step(lm, ids[:, -1], cache)
                    cache.advance()
    return run


results = {}
with torch.inference_mode():
    for v in [v for v in args.variants.split(',') if v]:
        run = runner(v)
        run()  # warm-up (and the compilation)
        prefill = torch.ones(1, PROMPT_LEN, dtype=torch.long)
        with profile(activities=[ProfilerActivity.CPU]) as p: run()
        with profile(activities=[ProfilerActivity.CPU]) as p0:  # the prefill alone, to subtract
            lm(ids, prefill, lm.init_cache(1, PROMPT_LEN))
        pre = {e.key: e.self_cpu_time_total for e in p0.key_averages()}
        ops = [(e.key, (e.self_cpu_time_total - pre.get(e.key, 0)) / n / 1e3, e.count / n)
               for e in p.key_averages()]
        ops = sorted([o for o in ops if o[1] > 0], key=lambda o: -o[1])
        total = sum(t for _, t, _ in ops)
        mv = sum(t for k, t, _ in ops if k in ('aten::mm', 'aten::addmm'))
        top = [dict(op=k, ms_per_step=t, share=t / total, calls_per_step=c) for k, t, c in ops[:args.top]]
        results[v] = {'ms_per_step': total, 'matrix_vector_share': mv / total, 'top': top}
        print(f'\n{v}: {total:.1f} ms of self CPU time per step (profiler wall clock), matrix-vector '
              f'products (aten::mm) {mv / total:.0%}')
        print('| op | ms per step | share | calls per step |\n|---|---|---|---|')
        for k, t, c in ops[:args.top]: print(f'| {k[:60]} | {t:.2f} | {t / total:.1%} | {c:.0f} |')

info = {**machine(), 'nanovlm_rev': git_rev(), 'steps': n, 'end_loadavg': list(os.getloadavg())}
path = write_json({**info, 'results': results}, args.json or default_json('decode-profile'))
print(f'wrote {path}')
