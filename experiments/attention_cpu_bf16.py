"""Chapter 2's reason for `_attention_math`: on a CPU in bf16, SDPA against the written-out attention.

Times the forward and backward pass of attention at the tiny preset's training shapes (batch 64: the ViT's
64 patches, bidirectional; the LM's 64 tokens, causal, 4 query heads sharing 2 KV heads), in bf16 on the CPU,
through `F.scaled_dot_product_attention` and through `_attention_math`. Prints the best of `--repeats` runs.

    python experiments/attention_cpu_bf16.py [--threads 1] [--repeats 30]
"""
import argparse, time
import torch
import torch.nn.functional as F
from nanovlm.config import get_preset
from nanovlm.vision_transformer import _attention_math


def best_ms(fn, shapes, repeats:int, **kw) -> float:
    "Best wall time of forward + backward, in ms, over `repeats` runs after 3 warm-ups."
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*s, generator=g).bfloat16().requires_grad_() for s in shapes)
    times = []
    for i in range(repeats + 3):
        t = time.perf_counter()
        fn(q, k, v, **kw).float().sum().backward()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times[3:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--repeats', type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c, B = get_preset('tiny'), 64
    T = c.n_image_tokens + c.lm_max_length
    cases = {'ViT (bidirectional)': ([(B, c.vit_n_heads, c.vit_n_patches, c.vit_head_dim)] * 3, {}),
             'LM (causal, GQA)': ([(B, c.lm_n_heads, T, c.lm_head_dim)] + [(B, c.lm_n_kv_heads, T, c.lm_head_dim)] * 2,
                                  {'is_causal': True})}
    sdpa = lambda q, k, v, **kw: F.scaled_dot_product_attention(q, k, v, enable_gqa=k.shape[1] != q.shape[1], **kw)
    print(f'torch {torch.__version__}, {args.threads} thread(s), best of {args.repeats}; forward + backward, bf16')
    for name, (shapes, kw) in cases.items():
        a, b = best_ms(sdpa, shapes, args.repeats, **kw), best_ms(_attention_math, shapes, args.repeats, **kw)
        print(f'{name}, q {shapes[0]}: SDPA {a:.1f} ms, written out {b:.1f} ms: {a / b:.1f}x')


if __name__ == '__main__':
    main()
