"""Does the colour task pull the ViT against the shape task? The gradient that each kind of question sends into the
ViT's weights, at a model's state: for each subtype (shape, colour, yes/no about a shape, yes/no about a colour),
K batches of 64 training questions of that subtype alone; per subtype the norm of the mean gradient, its
signal-to-noise (norm of the mean over the root-mean-square batch deviation), and the cosine between the subtypes'
mean gradients.

    python experiments/easyvqa/grads.py --name init                  # a fresh model (seed 0)
    python experiments/easyvqa/grads.py --name base --run runs/easyvqa/base
Writes results/grads_NAME.json.
"""
import argparse, json, random, sys
from dataclasses import replace
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from exp import load_rows, subtype, tokenizer_for
from nanovlm.config import get_preset
from nanovlm.data import VQADataset, VQACollator, image_processor_for, get_tokenizer
from nanovlm.training import seed_everything
from nanovlm.vision_language_model import VisionLanguageModel

HERE = Path(__file__).parent
KINDS = ('shape', 'color', 'yes/no shape', 'yes/no color')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--name', required=True)
    ap.add_argument('--run', type=Path, help='a run directory (default: a fresh tiny model, seed 0)')
    ap.add_argument('--batches', type=int, default=8)
    ap.add_argument('--data', type=Path, default=Path('runs/easyvqa/data/tune_train.jsonl'))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows, _ = load_rows(a.data, {})
    if a.run: model, tok = VisionLanguageModel.from_pretrained(str(a.run)), get_tokenizer(str(a.run))
    else:
        cfg = get_preset('tiny')
        tok = tokenizer_for(rows, cfg)
        seed_everything(0)
        model = VisionLanguageModel(replace(cfg, lm_eos_token_id=tok.eos_token_id))
    model.train()
    ds = VQADataset(rows, tok, image_processor_for(model.cfg))
    col = VQACollator(tok, model.cfg.lm_max_length)
    by = {k: [] for k in KINDS}
    for i, r in enumerate(rows):
        t = r['texts'][0]
        k = subtype(t['user'], t['assistant']).replace(' negated', '')
        by[k].append(i)
    params = [p for n, p in model.named_parameters() if n.startswith('vision_encoder.')]
    rng = random.Random(0)
    means, out = {}, {}
    for k in KINDS:
        gs, losses = [], []
        for _ in range(a.batches):
            b = col([ds[i] for i in rng.sample(by[k], 64)])
            model.zero_grad()
            _, loss = model(b['input_ids'], b['images'], b['attention_mask'], b['labels'])
            loss.backward()
            losses.append(loss.item())
            gs.append(torch.cat([p.grad.flatten() for p in params]).clone())
        g = torch.stack(gs)
        m = g.mean(0)
        noise = (g - m).pow(2).sum(1).mean().sqrt()
        means[k] = m
        out[k] = {'mean_grad_norm': m.norm().item(), 'snr': (m.norm() / noise).item(), 'loss': sum(losses) / len(losses)}  # mean over the batches
    cos = {f'{x} | {y}': torch.nn.functional.cosine_similarity(means[x], means[y], 0).item()
           for i, x in enumerate(KINDS) for y in KINDS[i + 1:]}
    res = {'name': a.name, 'run': str(a.run or 'fresh'), 'batches': a.batches, 'per_kind': out, 'cosine': cos}
    (HERE / 'results' / f'grads_{a.name}.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

if __name__ == '__main__': main()
