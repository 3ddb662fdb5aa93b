"""easy-VQA (PyPI `easy-vqa`, MIT) -> nanovlm's JSONL: one row per question, one user/assistant turn.

    pip install easy-vqa
    python experiments/easyvqa/convert.py --out runs/easyvqa/data

Writes into `--out` (images copied beside the files, paths relative to them):

- `train.jsonl`      all 38,575 training questions (4,000 images): the final run trains on this;
- `test.jsonl`       1,000 test questions, a seeded sample of the 9,673: the final number only;
- `tune_train.jsonl` the training questions of 3,600 training images;
- `tune_val.jsonl`   1,000 questions (seeded sample) on the other 400 training images, drawn by image with
                     the same seed: every tuning run evaluates on this, never on the test split;
- `labels.json`      each image's shape and colour (read off its questions), for the probes.

Each row is `{"image": "images/train/12.png", "texts": [{"user": q, "assistant": a}], "type": t}` with `t`
one of `yes/no`, `shape`, `color`, from the answer.
"""
import argparse, json, random, re, shutil
from pathlib import Path

SHAPES = ('circle', 'rectangle', 'triangle')

def answer_type(a:str) -> str:
    return 'yes/no' if a in ('yes', 'no') else 'shape' if a in SHAPES else 'color'

def row(split:str, q:str, a:str, img:int) -> dict:
    return {'image': f'images/{split}/{img}.png', 'texts': [{'user': q, 'assistant': a}], 'type': answer_type(a)}

def write(path:Path, rows:list):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    print(f'{path.name}: {len(rows)} rows, {len({r["image"] for r in rows})} images')

NAMED = re.compile(r'(?:what is the|what color is the|what is the color of the|is there|is there not|is no|'
                   r'is a|does the image contain|does the image not contain) a? ?(\w+)(?: shape)?(?: in the image| present)?\?')
NEGATED = re.compile(r'.*\b(?:not|no)\b')

def image_labels(qs:list) -> dict:
    "image id -> {'shape', 'color'}, read off its questions (an answer, or a thing a question says is there)."
    lab = {}
    for q, a, i in qs:
        d = lab.setdefault(i, {})
        if a in SHAPES: d['shape'] = a
        elif a not in ('yes', 'no'): d['color'] = a
        m = NAMED.fullmatch(q)
        if not m or m.group(1) == 'shape': continue
        x = m.group(1)
        there = a not in ('yes', 'no') or (a == 'yes') != bool(NEGATED.match(q))
        if there: d['shape' if x in SHAPES else 'color'] = x
        elif x in SHAPES: d.setdefault('not', set()).add(x)
    for d in lab.values():  # two shapes absent: the third is there
        left = set(SHAPES) - d.pop('not', set())
        if 'shape' not in d and len(left) == 1: d['shape'] = left.pop()
    return lab

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='runs/easyvqa/data')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--n-test', type=int, default=1000, help='test questions sampled (seeded)')
    ap.add_argument('--val-images', type=int, default=400, help='training images held out for tuning')
    ap.add_argument('--n-val', type=int, default=1000, help='validation questions sampled (seeded)')
    a = ap.parse_args(argv)
    import easy_vqa
    out = Path(a.out)
    splits = {'train': (easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()),
              'test': (easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())}
    qs = {}
    for split, ((texts, answers, ids), paths) in splits.items():
        (out / 'images' / split).mkdir(parents=True, exist_ok=True)
        for i, p in paths.items(): shutil.copyfile(p, out / 'images' / split / f'{i}.png')
        qs[split] = list(zip(texts, answers, ids))
    rng = random.Random(a.seed)
    write(out / 'train.jsonl', [row('train', *q) for q in qs['train']])
    write(out / 'test.jsonl', [row('test', *q) for q in rng.sample(qs['test'], a.n_test)])
    imgs = sorted({i for *_, i in qs['train']})
    val_imgs = set(random.Random(a.seed + 1).sample(imgs, a.val_images))
    write(out / 'tune_train.jsonl', [row('train', *q) for q in qs['train'] if q[2] not in val_imgs])
    val = [q for q in qs['train'] if q[2] in val_imgs]
    write(out / 'tune_val.jsonl', [row('train', *q) for q in random.Random(a.seed + 2).sample(val, a.n_val)])
    write(out / 'tune_val_all.jsonl', [row('train', *q) for q in val])
    labels = {s: image_labels(qs[s]) for s in qs}
    missing = {s: sum(1 for v in labels[s].values() if len(v) < 2) for s in labels}
    (out / 'labels.json').write_text(json.dumps({'val_images': sorted(val_imgs), **labels}))
    print(f'labels.json: images without a shape or colour label: {missing}')

if __name__ == '__main__': main()
