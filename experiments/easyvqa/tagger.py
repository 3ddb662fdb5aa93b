"""A vision warm-up that needs no labels but the dataset's own answers: the ViT learns to tag each image with the
set of answers its questions have (multi-label, a sigmoid per distinct answer), before the VLM is trained.

The shape probes (`probe.py`) show the tiny ViT learns shape in a few hundred steps under a linear head on its
pooled features, and a VLM started from such a ViT reads shape at once (`vitjoint`). This asks whether the same
comes from a generic signal: the answers (as any VQA file has them), grouped by image, with no question types.
An answer every image has (yes, no) is a constant tag and teaches nothing; an answer only some images have
(circle, red) is what the ViT must learn to see.

    python experiments/easyvqa/tagger.py --name tags800 --steps 800
    sh experiments/easyvqa/launch.sh vittags --init-vit-file runs/easyvqa/tagger_tags800/vit.safetensors

Writes runs/easyvqa/tagger_NAME/vit.safetensors and results/tagger_NAME.json (the loss, and a linear probe's
held-out shape and colour accuracy on the warmed-up ViT's pooled features, every --eval-every steps).
"""
import argparse, json, os, time
from pathlib import Path
import torch
from torch import nn
from PIL import Image
from nanovlm.config import get_preset
from nanovlm.data import image_processor_for
from nanovlm.vision_transformer import ViT
import probe

HERE = Path(__file__).parent

def answer_sets(path:Path) -> dict:
    "image path -> the set of its rows' answers."
    out = {}
    for line in path.read_text().splitlines():
        d = json.loads(line)
        out.setdefault(d['image'], set()).update(t['assistant'] for t in d['texts'])
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--name', required=True)
    ap.add_argument('--data-dir', type=Path, default=Path('runs/easyvqa/data'))
    ap.add_argument('--train', default='tune_train.jsonl')
    ap.add_argument('--steps', type=int, default=800)
    ap.add_argument('--eval-every', type=int, default=400)
    ap.add_argument('--lr', type=float, default=6e-4)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    cfg = get_preset('tiny')
    proc = image_processor_for(cfg)
    sets = answer_sets(a.data_dir / a.train)
    answers = sorted({x for s in sets.values() for x in s})
    paths = sorted(sets)
    x = torch.stack([proc(Image.open(a.data_dir / p).convert('RGB')) for p in paths])
    y = torch.zeros(len(paths), len(answers))
    for i, p in enumerate(paths):
        for ans in sets[p]: y[i, answers.index(ans)] = 1
    vit, head = ViT(cfg), nn.Linear(cfg.vit_hidden_dim, len(answers))
    opt = torch.optim.AdamW([*vit.parameters(), *head.parameters()], lr=a.lr, weight_decay=0.0)
    bce = nn.BCEWithLogitsLoss()
    d = probe.load(a.data_dir, proc)  # shape / colour labels, for the probe only (not used to train)
    res = {'name': a.name, 'args': {k: str(v) for k, v in vars(a).items()}, 'date': time.strftime('%Y-%m-%d %H:%M'),
           'n_images': len(paths), 'answers': answers, 'tag_rate': y.mean(0).tolist(), 'curve': []}
    g = torch.Generator().manual_seed(0)
    for step in range(1, a.steps + 1):
        for grp in opt.param_groups: grp['lr'] = a.lr * min(1.0, step / 100)
        i = torch.randint(len(x), (a.batch_size,), generator=g)
        loss = bce(head(vit(x[i]).mean(1)), y[i])
        opt.zero_grad(); loss.backward(); opt.step()
        if step % a.eval_every == 0:
            vit.eval()
            with torch.no_grad():
                f = {k: torch.cat([vit(v[0][j:j + 256]).mean(1) for j in range(0, len(v[0]), 256)]) for k, v in d.items()}
            vit.train()
            h = probe.Head(cfg.vit_hidden_dim)
            probe.fit(h, h.parameters(), f['train'], *d['train'][1:3], 600, 1e-3, 0.0)
            r = {'step': step, 'loss': round(loss.item(), 4), 'probe_test': probe.score(h, f['test'], *d['test'][1:])}
            res['curve'].append(r)
            print(r['step'], r['loss'], r['probe_test']['shape'], r['probe_test']['color'], flush=True)
    out = Path('runs/easyvqa') / f'tagger_{a.name}'
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file
    save_file(vit.state_dict(), str(out / 'vit.safetensors'))
    res['wall_s'] = round(time.time() - t0, 1)
    (HERE / 'results' / f'tagger_{a.name}.json').write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
