"""What a trained ViT looks like inside: attention entropy per block, dead MLP units, the rank of its output.

    python experiments/easyvqa/inspect_vit.py base shapeonly plastic        # run names under runs/easyvqa

A run's final model, or its best checkpoint when it has none (runs stopped early).

For 256 tuning-validation images: the mean entropy (nats) of each block's attention rows (uniform over 64 patches:
ln 64 = 4.16), the fraction of MLP hidden units that are never above 0 after GELU's input on any image (dead), and
the effective rank (exp of the entropy of the normalised singular values) of the final patch features.
Writes results/inspect_vit.json.
"""
import json, sys
from pathlib import Path
import torch
from PIL import Image
from nanovlm.config import get_preset
from nanovlm.data import image_processor_for
from nanovlm.vision_language_model import VisionLanguageModel

HERE = Path(__file__).parent

@torch.no_grad()
def inspect(model, x) -> dict:
    vit = model.vision_encoder
    h = vit.patch_embedding(x)
    ent, dead = [], []
    for b in vit.blocks:
        p = b.attn.attention_probs(b.ln1(h))                                     # (B, H, T, T)
        ent.append(round(float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean()), 3))
        pre = b.mlp.fc1(b.ln2(h + b.attn(b.ln1(h))))                             # (B, T, inter)
        dead.append(round(float((pre.amax((0, 1)) <= 0).float().mean()), 3))
        h = b(h)
    f = vit.layer_norm(h).flatten(0, 1)
    s = torch.linalg.svdvals(f - f.mean(0))
    q = s / s.sum()
    return {'attn_entropy': ent, 'dead_mlp_frac': dead, 'feature_eff_rank': round(float((-(q * q.log()).sum()).exp()), 1)}

def run_dir(n:str) -> str:
    "A run's final model, else its best checkpoint (runs stopped early leave only that)."
    d = Path('runs/easyvqa') / n
    return str(d if (d / 'config.json').is_file() else d / 'best')

def main(names):
    torch.set_num_threads(1)
    rows = [json.loads(l) for l in Path('runs/easyvqa/data/tune_val.jsonl').read_text().splitlines()]
    paths = sorted({r['image'] for r in rows})[:256]
    cfg = get_preset('tiny')
    proc = image_processor_for(cfg)
    x = torch.stack([proc(Image.open(Path('runs/easyvqa/data') / p).convert('RGB')) for p in paths])
    torch.manual_seed(0)
    out = {'init': inspect(VisionLanguageModel(cfg).eval(), x)}
    for n in names: out[n] = inspect(VisionLanguageModel.from_pretrained(run_dir(n)).eval(), x)
    for k, v in out.items(): print(k, v)
    (HERE / 'results' / 'inspect_vit.json').write_text(json.dumps(out, indent=1))

if __name__ == '__main__': main(sys.argv[1:])
