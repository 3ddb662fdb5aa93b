"""Can the vision side see the shape? Probes that separate "cannot see" from "cannot bind".

    python experiments/easyvqa/probe.py --name vit_scratch --steps 600           # the tiny ViT + a linear head,
                                                                                 # trained on the shape label alone
    python experiments/easyvqa/probe.py --name frozen_base --frozen runs/easyvqa/base   # a trained VLM's image
                                                                                 # tokens, frozen, + a probe head
    python experiments/easyvqa/probe.py --name frozen_random --frozen-random     # a fresh ViT's output, frozen

Images: the 3,600 tuning-training images of `convert.py` (those whose shape its labeller could read) to train,
the 400 held-out tuning images to test. `--frozen RUN` reads the image tokens the LM sees (after the projector)
of the model in run directory RUN; the probe is a linear map of the flattened tokens, and an MLP with one hidden
layer of 256. Writes `results/probe_NAME.json`: train and test accuracy per label, per shape size quartile.
"""
import argparse, json, os, random, time
from pathlib import Path
import numpy as np
import torch
from torch import nn
from PIL import Image
from nanovlm.config import get_preset
from nanovlm.data import image_processor_for
from nanovlm.vision_transformer import ViT
from nanovlm.vision_language_model import VisionLanguageModel

HERE = Path(__file__).parent
SHAPES = ('circle', 'rectangle', 'triangle')
COLORS = ('red', 'green', 'blue', 'black', 'gray', 'teal', 'brown', 'yellow')

def shape_area(img:Image.Image) -> int:
    "Pixels that differ clearly from the background (the corner pixel): the shape's area."
    a = np.asarray(img.convert('RGB')).astype(int)
    return int((np.abs(a - a[0, 0]).sum(-1) > 60).sum())

def load(data_dir:Path, proc):
    lab = json.loads((data_dir / 'labels.json').read_text())
    val = set(lab['val_images'])
    sets = {'train': [], 'test': []}
    for i, d in lab['train'].items():
        if 'shape' not in d: continue
        img = Image.open(data_dir / 'images' / 'train' / f'{i}.png').convert('RGB')
        sets['test' if int(i) in val else 'train'].append((proc(img), SHAPES.index(d['shape']),
                                                           COLORS.index(d['color']) if 'color' in d else -1,
                                                           shape_area(img)))
    out = {}
    for k, v in sets.items():
        x, s, c, area = zip(*v)
        out[k] = (torch.stack(x), torch.tensor(s), torch.tensor(c), torch.tensor(area))
    return out

class Scratch(nn.Module):
    "The tiny preset's ViT from scratch, mean-pooled (or its tokens flattened), and a linear head per label."
    def __init__(self, cfg, pool:str='mean'):
        super().__init__()
        self.vit, self.pool = ViT(cfg), pool
        C = cfg.vit_hidden_dim * (cfg.vit_n_patches if pool == 'flatten' else 1)
        self.shape, self.color = nn.Linear(C, len(SHAPES)), nn.Linear(C, len(COLORS))
    def forward(self, x):
        h = self.vit(x)
        h = h.mean(1) if self.pool == 'mean' else h.flatten(1)
        return self.shape(h), self.color(h)

class Head(nn.Module):
    "A probe on frozen features (B, N, C): linear or one hidden layer, on the flattened tokens."
    def __init__(self, dim:int, hidden:int=0):
        super().__init__()
        mk = lambda n: nn.Linear(dim, n) if not hidden else nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                                                             nn.Linear(hidden, n))
        self.shape, self.color = mk(len(SHAPES)), mk(len(COLORS))
    def forward(self, f):
        f = f.flatten(1)
        return self.shape(f), self.color(f)

def fit(model, params, x, s, c, steps:int, lr:float, wd:float, bs:int=64, seed:int=0, p_shape:float|None=None,
        pooled_loss:bool=False):
    """AdamW on the sum of the two labels' losses. `p_shape`: each drawn image keeps only one of its labels, its
    shape with probability `p_shape`, else its colour (as a VQA batch asks one question per row). `pooled_loss`:
    with `p_shape`, one mean over all the batch's labels (as a VLM's loss over its answer tokens) instead of each
    label's own mean (which weighs shape as much as colour, however few shape labels the batch has)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    ce = nn.CrossEntropyLoss(ignore_index=-1)
    model.train()
    for step in range(steps):
        i = torch.randint(len(x), (bs,), generator=g)
        si, ci = s[i], c[i]
        if p_shape is not None:
            ask_shape = torch.rand(bs, generator=g) < p_shape
            si, ci = si.masked_fill(~ask_shape, -1), ci.masked_fill(ask_shape, -1)
        ls, lc = model(x[i])
        if pooled_loss and p_shape is not None:
            sum_ce = nn.CrossEntropyLoss(ignore_index=-1, reduction='sum')
            loss = (sum_ce(ls, si) + sum_ce(lc, ci)) / bs
        else: loss = ce(ls, si) + ce(lc, ci)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()

@torch.no_grad()
def score(model, x, s, c, area) -> dict:
    model.eval()
    ls, lc = zip(*(model(x[i:i + 256]) for i in range(0, len(x), 256)))
    ok_s = torch.cat(ls).argmax(1) == s
    ok_c = (torch.cat(lc).argmax(1) == c)[c >= 0]
    q = torch.quantile(area.float(), torch.tensor([0.25, 0.5, 0.75]))
    bins = torch.bucketize(area.float(), q)
    by_size = {f'q{b + 1}': round(ok_s[bins == b].float().mean().item(), 4) for b in range(4)}
    return {'shape': round(ok_s.float().mean().item(), 4), 'color': round(ok_c.float().mean().item(), 4),
            'shape_by_area_quartile': by_size, 'area_quartiles_px': q.tolist()}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--name', required=True)
    ap.add_argument('--data-dir', type=Path, default=Path('runs/easyvqa/data'))
    ap.add_argument('--frozen', type=Path, help='a run directory: probe its image tokens, frozen')
    ap.add_argument('--frozen-random', action='store_true',
                    help="probe the ViT's output (before the projector) of a fresh, seeded tiny model, frozen")
    ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE')
    ap.add_argument('--steps', type=int, default=600)
    ap.add_argument('--lr', type=float, default=6e-4)
    ap.add_argument('--p-shape', type=float, help='each image trains one label: its shape with this probability')
    ap.add_argument('--pooled-loss', action='store_true', help="with --p-shape: one mean over all the batch's labels")
    ap.add_argument('--pool', choices=['mean', 'flatten'], default='mean',
                    help="how the scratch ViT's tokens reach the heads: their mean, or all of them flattened")
    ap.add_argument('--eval-every', type=int, help='evaluate every this many steps (default: at 1/4, 1/2, 1)')
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    res = {'name': a.name, 'args': {k: str(v) for k, v in vars(a).items()}, 'date': time.strftime('%Y-%m-%d %H:%M'),
           'loadavg_start': os.getloadavg()}
    if a.frozen or a.frozen_random:
        vlm = (VisionLanguageModel(get_preset('tiny')) if a.frozen_random
               else VisionLanguageModel.from_pretrained(str(a.frozen))).eval()
        cfg = vlm.cfg
        d = load(a.data_dir, image_processor_for(cfg))
        tokens = vlm.vision_encoder if a.frozen_random else lambda x: vlm.MP(vlm.vision_encoder(x))
        with torch.no_grad():
            feats = {k: torch.cat([tokens(v[0][i:i + 256]) for i in range(0, len(v[0]), 256)])
                     for k, v in d.items()}
        dim = feats['train'][0].numel()
        for hidden in (0, 256):
            head = Head(dim, hidden)
            fit(head, head.parameters(), feats['train'], *d['train'][1:3], a.steps, 1e-3, 0.05)
            key = 'mlp' if hidden else 'linear'
            res[key] = {'train': score(head, feats['train'], *d['train'][1:]),
                        'test': score(head, feats['test'], *d['test'][1:])}
            print(key, res[key]['train']['shape'], res[key]['test'])
    else:
        cfg = get_preset('tiny', **{k: eval(v) for k, v in (p.split('=', 1) for p in a.set)})
        d = load(a.data_dir, image_processor_for(cfg))
        model = Scratch(cfg, a.pool)
        res['curve'] = []
        done = 0
        marks = (range(a.eval_every, a.steps + 1, a.eval_every) if a.eval_every
                 else sorted({a.steps // 4, a.steps // 2, a.steps}))
        for upto in marks:
            fit(model, model.parameters(), *d['train'][:3], upto - done, a.lr, 0.0, seed=upto, p_shape=a.p_shape,
                pooled_loss=a.pooled_loss)
            done = upto
            r = {'step': done, 'train': score(model, *d['train']), 'test': score(model, *d['test'])}
            res['curve'].append(r)
            print(done, r['train']['shape'], r['test'])
    if not (a.frozen or a.frozen_random):  # the scratch ViT's weights, for exp.py --init-vit-file
        from safetensors.torch import save_file
        out = Path('runs/easyvqa') / f'probe_{a.name}'
        out.mkdir(parents=True, exist_ok=True)
        save_file(model.vit.state_dict(), str(out / 'vit.safetensors'))
    res['wall_s'] = round(time.time() - t0, 1)
    res['loadavg_end'] = os.getloadavg()
    (HERE / 'results').mkdir(exist_ok=True)
    (HERE / 'results' / f'probe_{a.name}.json').write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
