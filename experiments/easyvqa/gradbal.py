"""Per-kind gradient balancing for the ViT: does shape get through when the colour questions can no longer set the
ViT's step? Each step, the loss of each kind of question in the batch (the rows' `"type"`: shape, color, yes/no) is
differentiated with respect to the ViT's weights on its own, each of those gradients is scaled to unit norm, and
their sum (times the mean of their norms) is the ViT's gradient; every other weight gets the plain loss's gradient.
A custom loop (the library's `train` has no hook for this): AdamW at the tiny preset's 6e-4, 100 warm-up steps,
then constant (as the 3,000-step wsd schedule is until step 2,400), gradient clipping at 1, bf16 autocast, seed 0.

    python experiments/easyvqa/gradbal.py --name gradbal --steps 500 --threads 2
    python experiments/easyvqa/gradbal.py --name gradbal_off --steps 500 --threads 2 --off   # the same loop, plain
    python experiments/easyvqa/gradbal.py --name vitkinds_shape --steps 1000 --threads 1 --vit-kinds shape
Writes results/NAME.json (evaluations on tune_val every --eval-every steps).
"""
import argparse, json, os, random, sys, time
from dataclasses import replace
from pathlib import Path
import torch
import torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).parent))
from exp import load_rows, machine, tokenizer_for
from nanovlm.config import get_preset
from nanovlm.data import VQADataset, VQACollator, image_processor_for
from nanovlm.training import Evaluator, seed_everything, precision_context
from nanovlm.vision_language_model import VisionLanguageModel

HERE = Path(__file__).parent

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--name', required=True)
    ap.add_argument('--steps', type=int, default=500)
    ap.add_argument('--eval-every', type=int, default=250)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--off', action='store_true', help='no balancing: the plain loss for every weight')
    ap.add_argument('--vit-kinds', help="instead of balancing: the ViT learns only from these kinds' questions "
                                        "(comma-separated, e.g. shape), their share of the plain loss; the rest learn "
                                        "from every question")
    ap.add_argument('--type-mean', action='store_true',
                    help="instead of balancing: every weight learns from the mean over the batch's kinds of each "
                         "kind's mean answer-token loss (each kind weighs the same, whatever its share of the batch)")
    ap.add_argument('--data-dir', type=Path, default=Path('runs/easyvqa/data'))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cache = {}
    rows, types = load_rows(a.data_dir / 'tune_train.jsonl', cache)
    eval_rows, eval_types = load_rows(a.data_dir / 'tune_val.jsonl', cache)
    cfg = get_preset('tiny')
    tok = tokenizer_for(rows, cfg)
    cfg = replace(cfg, lm_eos_token_id=tok.eos_token_id)
    proc = image_processor_for(cfg)
    ds, col = VQADataset(rows, tok, proc), VQACollator(tok, cfg.lm_max_length)
    ev = Evaluator(VQADataset(eval_rows, tok, proc), col, tok, eval_types)
    seed_everything(0)
    model = VisionLanguageModel(cfg)
    vit = [p for n, p in model.named_parameters() if n.startswith('vision_encoder.')]
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.0)
    kinds = sorted(set(types))
    order, pos, rng = list(range(len(rows))), 0, random.Random(0)
    rng.shuffle(order)
    evals, t0 = [], time.perf_counter()
    for step in range(1, a.steps + 1):
        for g in opt.param_groups: g['lr'] = 6e-4 * min(1.0, step / 100)
        if pos + 64 > len(order): rng.shuffle(order); pos = 0
        idx = order[pos:pos + 64]; pos += 64
        b = col([ds[i] for i in idx])
        with precision_context(torch.device('cpu'), 'auto'):
            logits, loss = model(b['input_ids'], b['images'], b['attention_mask'], b['labels'])
        opt.zero_grad(set_to_none=True)
        if a.off: loss.backward()
        elif a.type_mean:
            tgt = b['labels']
            tok_loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=-100,
                                       reduction='none').view(tgt.shape)
            row_kind = [types[i] for i in b['index']]
            per = [(tok_loss * m).sum() / m.sum() for k in kinds
                   for m in [torch.tensor([rk == k for rk in row_kind])[:, None] & (tgt != -100)] if m.any()]
            torch.stack(per).mean().backward()
        elif a.vit_kinds:
            tgt, keep = b['labels'], set(a.vit_kinds.split(','))
            tok_loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=-100,
                                       reduction='none').view(tgt.shape)
            m = torch.tensor([types[i] in keep for i in b['index']])[:, None] & (tgt != -100)
            g = torch.autograd.grad((tok_loss * m).sum() / (tgt != -100).sum(), vit, retain_graph=True)
            loss.backward()
            for p, gp in zip(vit, g): p.grad = gp
        else:
            tgt = b['labels']
            tok_loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=-100,
                                       reduction='none').view(tgt.shape)
            row_kind = [types[i] for i in b['index']]
            gs = []
            for k in kinds:
                m = torch.tensor([rk == k for rk in row_kind])[:, None] & (tgt != -100)
                if m.any(): gs.append(torch.autograd.grad((tok_loss * m).sum() / m.sum(), vit, retain_graph=True))
            norms = [torch.sqrt(sum(x.float().pow(2).sum() for x in g)) for g in gs]
            scale = torch.stack(norms).mean()
            loss.backward()  # every weight's plain gradient; the ViT's is replaced below
            for j, p in enumerate(vit):
                p.grad = sum(g[j] / (n + 1e-12) for g, n in zip(gs, norms)) * scale / len(gs)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            r = {'step': step, 'elapsed_s': round(time.perf_counter() - t0, 1), **ev(model)}
            evals.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
            print(evals[-1], flush=True)
    res = {'name': a.name, 'argv': sys.argv[1:], 'date': time.strftime('%Y-%m-%d %H:%M'), 'machine': machine(),
           'threads': a.threads, 'loadavg': os.getloadavg(), 'balanced': not (a.off or a.vit_kinds or a.type_mean), 'type_mean': a.type_mean, 'vit_kinds': a.vit_kinds, 'evals': evals}
    (HERE / 'results' / f'{a.name}.json').write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
