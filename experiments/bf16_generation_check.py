"""Do bf16 weights answer like fp32 ones? A trained checkpoint's held-out ShapesVQA answers, three ways.

    python experiments/bf16_generation_check.py --checkpoint runs/tiny [--n 500] [--json out.json]

Loads the checkpoint with `load_for_inference` in fp32 and in bf16 (what `nanovlm-generate --precision auto`
gives on a CPU with native bf16), and also runs the fp32 weights under bf16 autocast (how `nanovlm-train`
evaluates). For each: held-out accuracy, the greedy answers of batch 128 (as the evaluation runs) and of
batch 1 (as `nanovlm-generate` runs, through the matrix-vector kernels), and how many answers differ from
the fp32 ones. Prints a table; --json also writes it.
"""
import argparse, json, time
from pathlib import Path
import torch
from nanovlm.generate import load_for_inference
from nanovlm.training import Evaluator
from nanovlm.train_cli import load_data
from nanovlm.data import VQACollator

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--checkpoint', required=True, help='a nanovlm-train run directory trained on ShapesVQA')
ap.add_argument('--n', type=int, default=500, help='held-out questions (default 500, the recipe evaluation)')
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--json', type=Path)
args = ap.parse_args()
torch.set_num_threads(args.threads)

def run(weights:str, precision:str, batch_size:int) -> dict:
    "Evaluator results and answers of the checkpoint loaded with `weights`, run under `precision`."
    model, tok, _ = load_for_inference(args.checkpoint, 'cpu', precision=weights)
    data = load_data('shapes', model.cfg, args.n, tokenizer=tok)
    ev = Evaluator(data['eval'], VQACollator(tok, model.cfg.lm_max_length), tok, data['qtypes'],
                   batch_size=batch_size, device='cpu', precision=precision)
    t = time.process_time()
    preds = ev.predictions(model)
    return {'accuracy': sum(p['correct'] for p in preds) / len(preds), 'answers': [p['prediction'] for p in preds],
            'cpu_s': time.process_time() - t}

variants = {'fp32 weights': ('fp32', 'fp32'), 'fp32 weights, bf16 autocast': ('fp32', 'bf16'),
            'bf16 weights': ('bf16', 'fp32')}
rows = []
for B in (128, 1):
    ref = None
    for name, (w, p) in variants.items():
        r = run(w, p, B)
        ref = ref or r['answers']
        diff = sum(a != b for a, b in zip(r['answers'], ref))
        rows.append({'variant': name, 'batch': B, 'accuracy': r['accuracy'], 'answers_differing_from_fp32': diff,
                     'n': len(ref), 'cpu_s': round(r['cpu_s'], 1)})
print('| variant | batch | held-out accuracy | answers differing from fp32 | CPU s |\n|---|---|---|---|---|')
for r in rows:
    print(f"| {r['variant']} | {r['batch']} | {r['accuracy']:.1%} | {r['answers_differing_from_fp32']} of {r['n']} | "
          f"{r['cpu_s']} |")
if args.json: args.json.write_text(json.dumps({'checkpoint': str(args.checkpoint), 'torch': torch.__version__,
                                                'threads': args.threads, 'rows': rows}, indent=1))
