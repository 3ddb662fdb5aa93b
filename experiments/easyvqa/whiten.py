"""easy-VQA with every image's background made white (the pixels of the corner pixel's colour), to test whether
the varying pastel backgrounds are what keeps the tiny ViT from learning shape (ShapesVQA's backgrounds are white).
Writes runs/easyvqa/data/images_white/ and tune_train_white.jsonl / tune_val_white.jsonl beside the originals.

    python experiments/easyvqa/whiten.py
"""
import json
from pathlib import Path
import numpy as np
from PIL import Image

D = Path('runs/easyvqa/data')

def whiten(src:Path, dst:Path):
    a = np.array(Image.open(src).convert('RGB'))
    a[(a == a[0, 0]).all(-1)] = 255
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(dst)

for name in ('tune_train', 'tune_val'):
    out = []
    for line in (D / f'{name}.jsonl').read_text().splitlines():
        r = json.loads(line)
        new = r['image'].replace('images/', 'images_white/', 1)
        if not (D / new).exists(): whiten(D / r['image'], D / new)
        out.append(json.dumps({**r, 'image': new}) + '\n')
    (D / f'{name}_white.jsonl').write_text(''.join(out))
    print(name, len(out))
